import { randomBytes } from 'node:crypto';
import type { SocketOptions } from '../../schemas/options.js';
import type { SocketState } from '../../schemas/socket.js';
import { errors, fromSysError, SockctlError } from '../errors.js';
import type { EventLog } from '../events/event-log.js';
import { C, native } from '../io/native.js';
import type { UnixPathRules } from './addresses.js';
import {
  checkCombination,
  familyBehaviour,
  normalizeFamily,
  normalizeProtocol,
  normalizeType,
  protocolName,
  protocolNumber,
  typeNumber,
} from './families.js';
import { ManagedSocket, type SocketContext, type SocketInit } from './managed-socket.js';

export interface RegistryConfig {
  maxWaitMs: number;
  maxSockets: number;
  closedRetentionMs: number;
  closedRetentionMax: number;
  recvDefaultBytes: number;
  recvMaxBytes: number;
  defaultBacklog: number;
  allowRaw: boolean;
  unix: UnixPathRules;
}

export interface CreateRequest {
  family: string;
  type: string;
  protocol?: string | number | undefined;
  label?: string | undefined;
  options?: SocketOptions | undefined;
  owner?: string;
}

/**
 * Owns every socket of the service: creates them, finds them by id, keeps closed ones readable for a
 * retention period, and closes all of them (unlinking the Unix paths it bound) at shutdown.
 */
export class Registry {
  private readonly sockets = new Map<string, ManagedSocket>();
  /** Closed sockets, oldest first, for the retention sweep. */
  private readonly closed: ManagedSocket[] = [];
  private openCount = 0;
  private readonly sweeper: NodeJS.Timeout;
  private readonly ctx: SocketContext;

  constructor(
    private readonly config: RegistryConfig,
    readonly events: EventLog,
  ) {
    this.ctx = {
      events,
      maxWaitMs: config.maxWaitMs,
      recvDefaultBytes: config.recvDefaultBytes,
      recvMaxBytes: config.recvMaxBytes,
      defaultBacklog: config.defaultBacklog,
      adopt: (init) => this.adopt(init, 'accept'),
      onClosed: (socket) => this.onClosed(socket),
    };
    this.sweeper = setInterval(() => this.sweep(), Math.min(10_000, Math.max(100, config.closedRetentionMs))).unref();
  }

  /** socket(2), then the requested options; a failing option closes the new fd again. */
  create(req: CreateRequest): ManagedSocket {
    const family = normalizeFamily(req.family);
    const type = normalizeType(req.type);
    const protocol = normalizeProtocol(req.protocol);
    checkCombination(family, type, protocol, this.config.allowRaw);
    this.checkCeiling('socket');
    const behaviour = familyBehaviour(family, this.config.unix);
    let fd: number;
    try {
      fd = native.socket(behaviour.domain, typeNumber(type), protocolNumber(protocol));
    } catch (e) {
      throw fromSysError(e, `socket ${family} ${type}`);
    }
    const socket = this.adopt(
      { id: '', fd, behaviour, type, protocol: this.kernelProtocol(fd), label: req.label ?? null, owner: req.owner ?? 'admin' },
      'socket',
    );
    if (req.options && Object.keys(req.options).length > 0) {
      try {
        socket.setOptions(req.options);
      } catch (e) {
        socket.close('options refused at create');
        this.forget(socket);
        throw e;
      }
    }
    return socket;
  }

  /** socketpair(2) (AF_UNIX): two connected sockets. */
  socketpair(req: { type: string; label?: string | undefined; owner?: string }): [ManagedSocket, ManagedSocket] {
    const type = normalizeType(req.type);
    if (type === 'SOCK_RAW') throw errors.badRequest('AF_UNIX has no SOCK_RAW');
    this.checkCeiling('socketpair', 2);
    const behaviour = familyBehaviour('AF_UNIX', this.config.unix);
    let fds: [number, number];
    try {
      fds = native.socketpair(C.AF_UNIX, typeNumber(type), 0);
    } catch (e) {
      throw fromSysError(e, `socketpair AF_UNIX ${type}`);
    }
    const make = (fd: number) =>
      this.adopt(
        { id: '', fd, behaviour, type, protocol: 0, label: req.label ?? null, owner: req.owner ?? 'admin', state: 'connected' },
        'socketpair',
      );
    return [make(fds[0]), make(fds[1])];
  }

  get(id: string, owner?: string): ManagedSocket {
    const s = this.sockets.get(id);
    if (!s || (owner !== undefined && s.owner !== owner)) throw errors.notFound(id);
    return s;
  }

  /** The socket with this id, if the registry still holds it (no ownership check: internal use). */
  find(id: string): ManagedSocket | undefined {
    return this.sockets.get(id);
  }

  list(filter: { state?: SocketState | undefined; label?: string | undefined; owner?: string | undefined } = {}): ManagedSocket[] {
    const out: ManagedSocket[] = [];
    for (const s of this.sockets.values()) {
      if (filter.state !== undefined && s.state !== filter.state) continue;
      if (filter.label !== undefined && s.label !== filter.label) continue;
      if (filter.owner !== undefined && s.owner !== filter.owner) continue;
      out.push(s);
    }
    return out;
  }

  /** Closes every open socket with the label; returns how many it closed. */
  closeByLabel(label: string, opts: { reset?: boolean | undefined; owner?: string | undefined } = {}): number {
    let n = 0;
    for (const s of this.list({ label, owner: opts.owner })) {
      if (!s.isOpen) continue;
      s.close(`closed by label '${label}'`, opts.reset ?? false);
      n++;
    }
    return n;
  }

  /** Closes every open socket (shutdown): fds released, Unix paths unlinked. */
  closeAll(reason: string): void {
    clearInterval(this.sweeper);
    for (const s of this.sockets.values()) if (s.isOpen) s.close(reason);
  }

  get size(): { open: number; total: number } {
    return { open: this.openCount, total: this.sockets.size };
  }

  private adopt(init: SocketInit, syscall: string): ManagedSocket {
    if (syscall === 'accept') this.checkCeiling('accept');
    let id: string;
    do id = randomBytes(9).toString('base64url');
    while (this.sockets.has(id));
    const socket = new ManagedSocket({ ...init, id }, this.ctx);
    this.sockets.set(id, socket);
    this.openCount++;
    this.events.emit(id, 'created', {
      family: socket.family,
      socketType: socket.type,
      protocol: socket.protocol,
      state: socket.state,
      label: socket.label,
      listener: socket.listener,
    });
    return socket;
  }

  /** The kernel's SO_PROTOCOL (a TCP socket created with protocol 0 reports IPPROTO_TCP). */
  private kernelProtocol(fd: number) {
    return protocolName(native.getsockoptInt(fd, C.SOL_SOCKET, C.SO_PROTOCOL));
  }

  private checkCeiling(syscall: string, needed = 1): void {
    if (this.openCount + needed <= this.config.maxSockets) return;
    throw new SockctlError(
      503,
      'EMFILE',
      `${syscall}: the service holds ${this.openCount} sockets, its ceiling (SOCKCTL_MAX_SOCKETS=${this.config.maxSockets})`,
      { errno: C.EMFILE, syscall },
    );
  }

  private onClosed(socket: ManagedSocket): void {
    this.openCount--;
    this.closed.push(socket);
    if (this.closed.length > this.config.closedRetentionMax) this.forget(this.closed.shift()!);
  }

  private forget(socket: ManagedSocket): void {
    this.sockets.delete(socket.id);
    const i = this.closed.indexOf(socket);
    if (i >= 0) this.closed.splice(i, 1);
  }

  private sweep(): void {
    const limit = Date.now() - this.config.closedRetentionMs;
    while (this.closed.length > 0 && this.closed[0]!.closedAt!.getTime() <= limit) this.forget(this.closed[0]!);
  }
}

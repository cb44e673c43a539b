import { randomFillSync } from 'node:crypto';
import type { SocketOptions } from '../../schemas/options.js';
import type { SocketState } from '../../schemas/socket.js';
import { errors, fromSysError, SockctlError } from '../errors.js';
import type { EventLog, SockEvent } from '../events/event-log.js';
import { C, native } from '../io/native.js';
import type { Access } from '../policy/access.js';
import type { User } from '../policy/users.js';
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
import { count } from './owner-counts.js';

export interface RegistryConfig {
  maxWaitMs: number;
  maxSockets: number;
  closedRetentionMs: number;
  closedRetentionMax: number;
  recvDefaultBytes: number;
  recvMaxBytes: number;
  defaultBacklog: number;
  idleTimeoutMs: number;
  maxLifetimeMs: number;
}

export interface CreateRequest {
  family: string;
  type: string;
  protocol?: string | number | undefined;
  label?: string | undefined;
  options?: SocketOptions | undefined;
}

/** What list() and page() select by; an absent field selects all. */
export interface ListFilter {
  state?: SocketState | undefined;
  label?: string | undefined;
  owner?: string | undefined;
}

function matches(s: ManagedSocket, f: ListFilter): boolean {
  return (f.state === undefined || s.state === f.state) && (f.label === undefined || s.label === f.label) && (f.owner === undefined || s.owner === f.owner);
}

/** Random bytes for ids, drawn 9 at a time from a pool: one randomFillSync per 455 ids instead of one each. */
const idPool = Buffer.alloc(9 * 455);
let idNext = idPool.length;

/** A socket id: 12 base64url characters from 72 random bits. */
function newId(): string {
  if (idNext === idPool.length) {
    randomFillSync(idPool);
    idNext = 0;
  }
  idNext += 9;
  return idPool.toString('base64url', idNext - 9, idNext);
}

/**
 * Owns every socket of the service: creates them, finds them by id, keeps closed ones readable for a
 * retention period, and closes all of them (unlinking the Unix paths it bound) at shutdown.
 */
export class Registry {
  private readonly sockets = new Map<string, ManagedSocket>();
  /** Creation order, for list pages' cursors (the map iterates in the same order). */
  private readonly serials = new WeakMap<ManagedSocket, number>();
  private lastSerial = 0;
  /** Closed sockets, oldest first, for the retention sweep. */
  private readonly closed: ManagedSocket[] = [];
  private openCount = 0;
  /** Open sockets per owner, for the quota check without a scan. */
  private readonly openByOwner = new Map<string, number>();
  /** Listening sockets per owner, for the listeners quota without a scan. */
  private readonly listenersByOwner = new Map<string, number>();
  private readonly sweeper: NodeJS.Timeout;
  private readonly ctx: SocketContext;

  constructor(
    private readonly config: RegistryConfig,
    readonly events: EventLog,
    readonly access: Access,
  ) {
    this.ctx = {
      access,
      countListeners: (owner) => this.listenersByOwner.get(owner) ?? 0,
      onTransition: (socket, previous, to) => {
        if (to === 'listening') count(this.listenersByOwner, socket.owner, 1);
        else if (previous === 'listening') count(this.listenersByOwner, socket.owner, -1);
      },
      portOwners: (socket, port) =>
        this.list()
          .filter((s) => s !== socket && s.type === socket.type && s.family === socket.family && s.localPort() === port)
          .map((s) => s.owner),
      events,
      maxWaitMs: config.maxWaitMs,
      recvDefaultBytes: config.recvDefaultBytes,
      recvMaxBytes: config.recvMaxBytes,
      defaultBacklog: config.defaultBacklog,
      adopt: (init) => this.adopt(init, 'accept'),
      onClosed: (socket) => this.onClosed(socket),
    };
    const every = Math.min(10_000, ...[config.closedRetentionMs, config.idleTimeoutMs / 4, config.maxLifetimeMs / 4].filter((x) => x > 0));
    this.sweeper = setInterval(() => this.sweep(), Math.max(100, every)).unref();
  }

  /** socket(2), then the requested options; a failing option closes the new fd again. */
  create(req: CreateRequest, user: User): ManagedSocket {
    const family = normalizeFamily(req.family);
    const type = normalizeType(req.type);
    const protocol = normalizeProtocol(req.protocol);
    checkCombination(family, type, protocol, this.access.mayUseRaw(user));
    this.checkCeiling('socket', user);
    const behaviour = familyBehaviour(family, { unixDir: this.access.unixDirFor(user) });
    let fd: number;
    try {
      fd = native.socket(behaviour.domain, typeNumber(type), protocolNumber(protocol));
    } catch (e) {
      throw fromSysError(e, `socket ${family} ${type}`);
    }
    const socket = this.adopt(
      { id: '', fd, behaviour, type, protocol: this.kernelProtocol(fd), label: req.label ?? null, user },
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
  socketpair(req: { type: string; label?: string | undefined }, user: User): [ManagedSocket, ManagedSocket] {
    const type = normalizeType(req.type);
    if (type === 'SOCK_RAW') throw errors.badRequest('AF_UNIX has no SOCK_RAW');
    this.checkCeiling('socketpair', user, 2);
    const behaviour = familyBehaviour('AF_UNIX', { unixDir: this.access.unixDirFor(user) });
    let fds: [number, number];
    try {
      fds = native.socketpair(C.AF_UNIX, typeNumber(type), 0);
    } catch (e) {
      throw fromSysError(e, `socketpair AF_UNIX ${type}`);
    }
    const make = (fd: number) =>
      this.adopt(
        { id: '', fd, behaviour, type, protocol: 0, label: req.label ?? null, user, state: 'connected' },
        'socketpair',
      );
    return [make(fds[0]), make(fds[1])];
  }

  /** The socket, if `user` may see it (its owner, or an admin); another user's socket is a 404 like a missing one. */
  get(id: string, user: User): ManagedSocket {
    const s = this.sockets.get(id);
    if (!s || !maysee(user, s)) throw errors.notFound(id);
    return s;
  }

  /**
   * Which events `user` may see (DESIGN.md section 5): those of their own sockets (every socket for an
   * admin), narrowed to one socket or one label; `gap` notices (socket '*') always pass.
   */
  eventFilter(user: User, only: { socket?: string | undefined; label?: string | undefined }): (e: SockEvent) => boolean {
    return (e) => {
      if (e.socket === '*') return true;
      if (only.socket !== undefined && e.socket !== only.socket) return false;
      if (only.label === undefined && user.role === 'admin') return true;
      const s = this.sockets.get(e.socket);
      if (!s || !maysee(user, s)) return false;
      return only.label === undefined || s.label === only.label;
    };
  }

  /** Every socket held, open or retained after close, oldest first. */
  all(): Iterable<ManagedSocket> {
    return this.sockets.values();
  }

  /** The socket with this id, if the registry still holds it (no ownership check: internal use). */
  find(id: string): ManagedSocket | undefined {
    return this.sockets.get(id);
  }

  list(filter: ListFilter = {}): ManagedSocket[] {
    const out: ManagedSocket[] = [];
    for (const s of this.sockets.values()) if (matches(s, filter)) out.push(s);
    return out;
  }

  /**
   * One page of list(): the sockets matching `filter` created after the one whose serial is `after`, oldest
   * first, at most `limit`; `next` is the cursor of the page after (null when no socket is left).
   */
  page(filter: ListFilter, after: number, limit: number): { sockets: ManagedSocket[]; next: string | null } {
    const out: ManagedSocket[] = [];
    for (const s of this.sockets.values()) {
      if (this.serials.get(s)! <= after || !matches(s, filter)) continue;
      if (out.length === limit) return { sockets: out, next: String(this.serials.get(out.at(-1)!)) };
      out.push(s);
    }
    return { sockets: out, next: null };
  }

  /** Closes every open socket with the label; returns how many it closed. */
  closeByLabel(label: string, user: User, opts: { reset?: boolean | undefined } = {}): number {
    let n = 0;
    for (const s of this.list({ label, owner: ownerFilter(user) })) {
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
    if (syscall === 'accept') this.checkCeiling('accept', init.user);
    let id: string;
    do id = newId();
    while (this.sockets.has(id));
    const socket = new ManagedSocket({ ...init, id }, this.ctx);
    this.sockets.set(id, socket);
    this.serials.set(socket, ++this.lastSerial);
    this.openCount++;
    count(this.openByOwner, socket.owner, 1);
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

  /** The user's quota (429) and the service's ceiling (503 EMFILE: the service's own descriptor budget). */
  private checkCeiling(syscall: string, user: User, needed = 1): void {
    const mine = this.openByOwner.get(user.name) ?? 0;
    if (mine + needed > user.limits.sockets)
      throw errors.quota(`${syscall}: user '${user.name}' holds ${mine} open sockets, the limit is ${user.limits.sockets}`);
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
    count(this.openByOwner, socket.owner, -1);
    this.closed.push(socket);
    if (this.closed.length > this.config.closedRetentionMax) this.forget(this.closed.shift()!);
  }

  private forget(socket: ManagedSocket): void {
    this.sockets.delete(socket.id);
    const i = this.closed.indexOf(socket);
    if (i >= 0) this.closed.splice(i, 1);
  }

  private sweep(): void {
    const now = Date.now();
    const { idleTimeoutMs: idle, maxLifetimeMs: life } = this.config;
    if (idle > 0 || life > 0)
      for (const s of this.sockets.values()) {
        if (!s.isOpen) continue;
        if (life > 0 && now - s.createdAt.getTime() >= life) s.close(`lifetime of ${life} ms reached (SOCKCTL_MAX_LIFETIME_MS)`);
        else if (idle > 0 && now - s.lastActive >= idle && !s.consumer) s.close(`idle for ${idle} ms (SOCKCTL_IDLE_TIMEOUT_MS)`);
      }
    const limit = now - this.config.closedRetentionMs;
    while (this.closed.length > 0 && this.closed[0]!.closedAt!.getTime() <= limit) this.forget(this.closed[0]!);
  }
}

function maysee(user: User, s: ManagedSocket): boolean {
  return user.role === 'admin' || s.owner === user.name;
}

/** The owner filter for a listing: none for an admin. */
export function ownerFilter(user: User): string | undefined {
  return user.role === 'admin' ? undefined : user.name;
}

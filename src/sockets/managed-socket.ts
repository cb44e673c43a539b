import assert from 'node:assert/strict';
import type { AddressInput } from '../../schemas/address.js';
import type { SocketOptions } from '../../schemas/options.js';
import type { AsyncError, Family, Protocol, Socket, SocketState, SocketType } from '../../schemas/socket.js';
import { errors, fromSysError, isErrno, isSysError, SockctlError, syscallError } from '../errors.js';
import type { EventLog } from '../events/event-log.js';
import { ClosedWhileWaiting, Deadline, retryUntilReady } from '../io/blocking.js';
import { C, native, type SockAddr } from '../io/native.js';
import { FdWatcher, type ReaderCallback, type ReaderOptions, type StreamReader, type WaitOutcome } from '../io/watcher.js';
import { describe, isUnbound, sockaddrView, wireAddress } from './addresses.js';
import type { FamilyBehaviour } from './families.js';
import type { Access } from '../policy/access.js';
import type { User } from '../policy/users.js';
import { closedKernelView, kernelView } from './kernel.js';
import { readOnlyNames, readOptions, writeOption } from './options.js';
import { canTransition } from './state.js';
import { peekAll, recvAll, recvBlocking, sendBlocking } from './transfer.js';

/** What a socket needs from the service around it. */
export interface SocketContext {
  readonly events: EventLog;
  /** Policy, connect rate and Unix directories of the owner. */
  readonly access: Access;
  /** How many listening sockets the user holds now. */
  countListeners(owner: string): number;
  /** Called on every state change, before its event. */
  onTransition(socket: ManagedSocket, previous: SocketState, to: SocketState): void;
  /** Owners of the open sockets of the same type and family as `socket` bound to `port`. */
  portOwners(socket: ManagedSocket, port: number): string[];
  readonly maxWaitMs: number;
  readonly recvDefaultBytes: number;
  readonly recvMaxBytes: number;
  readonly defaultBacklog: number;
  /** Registers a socket this one accepted; throws (e.g. the service's ceiling) to leave it unaccepted. */
  adopt(init: SocketInit): ManagedSocket;
  /** Called once, when the socket closes. */
  onClosed(socket: ManagedSocket): void;
}

export interface SocketInit {
  id: string;
  fd: number;
  behaviour: FamilyBehaviour;
  type: SocketType;
  protocol: Protocol;
  label: string | null;
  user: User;
  state?: SocketState;
  listener?: string | null;
}

export interface RecvOptions {
  maxBytes?: number | undefined;
  timeoutMs?: number | undefined;
  peek?: boolean | undefined;
  waitAll?: boolean | undefined;
}

export interface Received {
  data: Buffer;
  eof: boolean;
  from?: ReturnType<typeof wireAddress> | null;
  truncated?: boolean;
}

/** Asynchronous errors: what the network or the peer did, remembered in `lastError`. */
const ASYNC_ERRNOS = ['ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH'];

/**
 * One descriptor the service owns: its lifecycle (src/sockets/state.ts), its operations as blocking
 * calls with timeouts, and its resource view. Every syscall goes through the addon with this socket's
 * fd, and only while the socket is open: a closed socket answers EBADF without touching the number
 * (the kernel may already have given it to another socket).
 */
export class ManagedSocket {
  readonly id: string;
  readonly fd: number;
  readonly family: Family;
  readonly type: SocketType;
  readonly protocol: Protocol;
  readonly label: string | null;
  readonly user: User;
  readonly listener: string | null;
  readonly createdAt = new Date();
  readonly stats = { bytesSent: 0, bytesReceived: 0, messagesSent: 0, messagesReceived: 0 };
  readonly shutdownFlags = { read: false, write: false };
  backlog: number | null = null;
  lastError: AsyncError | null = null;
  closedAt: Date | null = null;
  closeReason: string | null = null;
  /** Set while a consumer stream owns the reading side (DESIGN.md section 5). */
  consumer: unknown = null;

  private current: SocketState;
  private readonly behaviour: FamilyBehaviour;
  private readonly watcher: FdWatcher;
  private readonly stream: boolean;
  private lastLocal: SockAddr | null = null;
  private lastRemote: SockAddr | null = null;
  /** The last address pair seen connected: finds a TCP connection in /proc once getpeername() fails (TIME_WAIT). */
  private connection: { local: SockAddr; remote: SockAddr } | null = null;
  private unlinkOnClose: (() => void) | undefined;
  private readonly releases: (() => void)[] = [];
  private connecting: Promise<void> | undefined;
  private rcvTimeoMs = 0;
  private sndTimeoMs = 0;

  constructor(
    init: SocketInit,
    private readonly ctx: SocketContext,
  ) {
    this.id = init.id;
    this.fd = init.fd;
    this.behaviour = init.behaviour;
    this.family = init.behaviour.family;
    this.type = init.type;
    this.protocol = init.protocol;
    this.label = init.label;
    this.user = init.user;
    this.listener = init.listener ?? null;
    this.current = init.state ?? 'created';
    this.stream = init.type === 'SOCK_STREAM';
    this.watcher = new FdWatcher(init.fd);
  }

  get owner(): string {
    return this.user.name;
  }

  /** When an operation last touched the socket (for the idle timeout). */
  lastActive = Date.now();

  get state(): SocketState {
    return this.current;
  }

  get isOpen(): boolean {
    return this.current !== 'closed';
  }

  /** The one place the state changes; each change emits exactly one `state` event. */
  private transition(to: SocketState): void {
    const previous = this.current;
    if (previous === to) return;
    assert.ok(canTransition(previous, to), `illegal transition ${previous} -> ${to}`);
    this.current = to;
    this.ctx.onTransition(this, previous, to);
    // remember the connection's address pair now, even if nobody reads the resource while it lasts
    if (to === 'connected') this.refreshAddresses();
    this.ctx.events.emit(this.id, 'state', { state: to, previous });
  }

  /** bind(2); EADDRINUSE and friends come from here, at this step. */
  bind(input: AddressInput): void {
    this.guard('bind');
    const sa = this.behaviour.toSockAddr(input);
    this.ctx.access.authorize(this.user, 'bind', sa);
    if ('port' in sa && sa.port !== 0 && this.user.role !== 'admin' && this.sharesPorts()) {
      const holder = this.ctx.portOwners(this, sa.port).find((owner) => owner !== this.owner);
      if (holder !== undefined)
        throw errors.forbidden(`bind ${describe(sa)}: the port is held by another user's socket, and SO_REUSEPORT/SO_REUSEADDR must not share it`);
    }
    this.sys(`bind ${describe(sa)}`, () => native.bind(this.fd, sa));
    const local = native.getsockname(this.fd);
    this.unlinkOnClose = this.behaviour.boundCleanup(local);
    if (this.current === 'created') this.transition('bound');
  }

  /** listen(2); on an unbound TCP socket the kernel binds an ephemeral port, as in C. */
  listen(backlog: number = this.ctx.defaultBacklog): void {
    this.guard('listen');
    if (this.current !== 'listening') {
      const limit = this.user.limits.listeners;
      if (this.ctx.countListeners(this.owner) >= limit)
        throw errors.quota(`listen: user '${this.owner}' holds ${limit} listening sockets, the limit`);
      if (this.type !== 'SOCK_DGRAM') this.authorizeImplicitBind();
    }
    this.sys(`listen backlog ${backlog}`, () => native.listen(this.fd, backlog));
    this.backlog = backlog;
    this.transition('listening');
  }

  /** accept(2), waiting up to timeoutMs for a connection in the kernel's queue. */
  async accept(timeoutMs?: number): Promise<ManagedSocket> {
    this.guard('accept4');
    const deadline = new Deadline(this.waitFor(timeoutMs, this.rcvTimeoMs));
    const accepted = await this.sysWait('accept', () =>
      retryUntilReady(this.watcher, 'readable', deadline, () => native.accept(this.fd)),
    );
    let child: ManagedSocket;
    try {
      child = this.ctx.adopt({
        id: '',
        fd: accepted.fd,
        behaviour: this.behaviour,
        type: this.type,
        protocol: this.protocol,
        label: this.label,
        user: this.user,
        state: 'connected',
        listener: this.id,
      });
    } catch (e) {
      native.close(accepted.fd);
      throw e;
    }
    this.ctx.events.emit(this.id, 'accepted', {
      child: child.id,
      remote: accepted.remote ? wireAddress(accepted.remote) : null,
    });
    return child;
  }

  /**
   * connect(2). Returns 'connected', or 'in-progress' when timeoutMs is 0 and the kernel answered
   * EINPROGRESS. The service finishes its own connect in the background (by calling connect again once
   * the fd is writable, DESIGN.md section 1), so the state follows the kernel even if nobody waits.
   */
  async connect(input: AddressInput, timeoutMs?: number): Promise<'connected' | 'in-progress'> {
    this.guard('connect');
    const sa = this.behaviour.toSockAddr(input);
    this.ctx.access.authorize(this.user, 'connect', sa);
    this.ctx.access.takeConnect(this.user);
    const what = `connect ${describe(sa)}`;
    try {
      native.connect(this.fd, sa);
      this.transition('connected');
      return 'connected';
    } catch (e) {
      if (isErrno(e, 'EAGAIN') && this.family === 'AF_UNIX' && timeoutMs !== 0) {
        // a Unix listener's backlog is full: a blocking connect waits for room
        await this.sysWait(what, () => unixConnectWhenRoom(this.fd, sa, new Deadline(this.waitFor(timeoutMs, 0)), () => this.isOpen));
        this.transition('connected');
        return 'connected';
      }
      if (!isErrno(e, 'EINPROGRESS', 'EALREADY')) throw this.fail(e, what);
      if (isErrno(e, 'EALREADY') && (timeoutMs === 0 || !this.connecting)) throw this.fail(e, what);
    }
    if (this.current !== 'connecting') {
      const before = this.current;
      this.transition('connecting');
      this.connecting = this.finishConnect(sa, what, before);
      // nobody may await it (timeoutMs 0): its failure is reported through lastError, not as an unhandled rejection
      this.connecting.catch(() => {});
    }
    if (timeoutMs === 0) return 'in-progress';
    const wait = this.waitFor(timeoutMs, 0);
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), wait);
    });
    try {
      const outcome = await Promise.race([this.connecting!.then(() => 'done' as const), expired]);
      if (outcome === 'timeout') {
        // the kernel keeps trying: the socket stays `connecting` (DESIGN.md section 3)
        throw syscallError('ETIMEDOUT', C.ETIMEDOUT, 'connect', `${what} (still in progress after ${wait} ms)`, this.id, new Error('Connection timed out'));
      }
      return 'connected';
    } finally {
      clearTimeout(timer);
    }
  }

  private async finishConnect(sa: SockAddr, what: string, before: SocketState): Promise<void> {
    const outcome = await this.watcher.wait('writable', Infinity);
    if (outcome === 'closed') throw errors.closed(this.id, 'connect');
    try {
      native.connect(this.fd, sa);
    } catch (e) {
      if (!isErrno(e, 'EISCONN')) {
        this.connecting = undefined;
        // back to created, or bound if the user had bound; not judged by getsockname(), which after a
        // refused connect still shows the released ephemeral port (0.0.0.0:N)
        this.transition(before === 'bound' ? 'bound' : 'created');
        throw this.fail(e, what);
      }
    }
    this.connecting = undefined;
    this.transition('connected');
  }

  /** send(2) / sendto(2), blocking up to timeoutMs while the send buffer is full. */
  async send(
    data: Buffer,
    opts: { to?: AddressInput | undefined; flags?: number; timeoutMs?: number | undefined; untilDone?: boolean } = {},
  ): Promise<number> {
    this.guard(opts.to ? 'sendto' : 'send');
    const to = opts.to ? this.behaviour.toSockAddr(opts.to) : null;
    if (to) this.ctx.access.authorize(this.user, 'sendto', to);
    const flags = opts.flags ?? 0;
    const nonblocking = (flags & C.MSG_DONTWAIT) !== 0;
    // untilDone: a consumer stream's write, which waits as long as the socket stays open
    const wait = opts.untilDone ? Infinity : nonblocking ? 0 : this.waitFor(opts.timeoutMs, this.sndTimeoMs);
    const deadline = new Deadline(wait);
    const what = to ? `sendto ${describe(to)}` : 'send';
    const sent = await this.sysWait(what, () => sendBlocking(this.fd, this.watcher, deadline, data, flags, to, this.stream));
    this.stats.bytesSent += sent;
    this.stats.messagesSent += 1;
    if (to && this.current === 'created' && !isUnbound(native.getsockname(this.fd), this.type === 'SOCK_RAW'))
      this.transition('bound');
    this.ctx.events.emitBytes(this.id, 'sent', this.stats.bytesSent - sent, sent, data.subarray(0, sent));
    return sent;
  }

  /**
   * A consumer stream's write: one non-blocking sendmsg(2) over `chunks` (writev semantics); returns the
   * bytes queued, or throws EAGAIN (504) when the send buffer took none. One `sent` event per call; its
   * bytes are copied into one buffer only when a listener wants them and the call took more than a chunk.
   * (Events are kept in the log's ring until it turns over: one per 64 KiB chunk, at 1 GB/s, aged there into
   * the old generation fast enough to start mark-compacts, and a stream's frames then survived them.)
   */
  writeChunks(chunks: Buffer[]): number {
    this.guard('sendmsg');
    const n = this.sys('sendmsg', () => native.sendv(this.fd, chunks, 0));
    this.stats.messagesSent += 1;
    if (n === 0) return 0;
    // one `sent` event per sendmsg, as for a REST send: the bytes (joined if need be) only for listeners that want them
    let payload: Buffer | undefined;
    if (this.ctx.events.wantsCopies) payload = n <= chunks[0]!.length ? chunks[0]!.subarray(0, n) : Buffer.concat(chunks, n);
    this.ctx.events.emitBytes(this.id, 'sent', this.stats.bytesSent, n, payload);
    this.stats.bytesSent += n;
    return n;
  }

  /** recv(2) / recvfrom(2): one datagram, or on a stream what is there (waitAll: up to maxBytes or EOF). */
  async recv(opts: RecvOptions = {}): Promise<Received> {
    this.guard('recvmsg');
    if (this.consumer) throw errors.streamAttached(this.id);
    const maxBytes = opts.maxBytes ?? this.ctx.recvDefaultBytes;
    if (maxBytes > this.ctx.recvMaxBytes)
      throw errors.badRequest(`maxBytes ${maxBytes} is over the limit of ${this.ctx.recvMaxBytes} (SOCKCTL_RECV_MAX_BYTES)`);
    const deadline = new Deadline(this.waitFor(opts.timeoutMs, this.rcvTimeoMs));
    const peek = opts.peek ? C.MSG_PEEK : 0;
    let out: Received;
    if (this.stream && opts.waitAll) {
      if (opts.peek) {
        if (this.family === 'AF_UNIX') throw errors.badRequest('peek with waitAll is supported on TCP only');
        const r = await this.sysWait('recv', () => peekAll(this.fd, this.watcher, deadline, maxBytes));
        out = { data: r.data, eof: r.length === 0 && maxBytes > 0 };
      } else {
        out = await this.sysWait('recv', () => recvAll(this.fd, this.watcher, deadline, maxBytes));
      }
    } else {
      const r = await this.sysWait('recv', () => recvBlocking(this.fd, this.watcher, deadline, maxBytes, peek, this.stream));
      const boundaryless = this.stream || this.type === 'SOCK_SEQPACKET';
      out = { data: r.data, eof: boundaryless && r.length === 0 && maxBytes > 0 };
      if (!this.stream) {
        out.from = r.from ? nullIfUnnamed(r.from) : null;
        out.truncated = r.truncated;
      }
    }
    if (!opts.peek) this.received(out.data, out.eof, out.from, out.truncated);
    return out;
  }

  /** Counts what a read took and reports it: one `data` event (bytes attached for observers), or `eof`. */
  private received(data: Buffer, eof: boolean, from?: Received['from'], truncated?: boolean): void {
    if (eof) {
      this.ctx.events.emit(this.id, 'eof', { offset: this.stats.bytesReceived });
      return;
    }
    const offset = this.stats.bytesReceived;
    this.stats.bytesReceived += data.length;
    this.stats.messagesReceived += 1;
    // a datagram's event says who sent it (and whether it was cut)
    if (from === undefined) this.ctx.events.emitBytes(this.id, 'data', offset, data.length, data);
    else this.ctx.events.emit(this.id, 'data', { offset, bytes: data.length, from, truncated: truncated ?? false }, data);
  }

  /**
   * A consumer stream's read on a datagram or seqpacket socket (streams use the native reader): non-blocking
   * recvs of one message each, up to `chunkBytes`, until the kernel has no more, a seqpacket EOF, or `budget`
   * bytes (so one fast peer cannot starve the event loop). Each message becomes one `data` event with its
   * sender. Returns whether to read again at once ('more'), wait for readiness ('blocked') or stop ('eof').
   */
  pull(chunkBytes: number, budget: number): 'more' | 'blocked' | 'eof' {
    assert.ok(!this.stream, 'stream sockets are read by the native reader');
    this.guard('recvmsg');
    let taken = 0;
    while (taken < budget) {
      let r;
      try {
        r = native.recv(this.fd, chunkBytes, 0);
      } catch (e) {
        if (isErrno(e, 'EAGAIN')) return 'blocked';
        throw this.fail(e, 'recv');
      }
      const eof = r.length === 0 && this.type === 'SOCK_SEQPACKET';
      this.received(r.data, eof, r.from ? nullIfUnnamed(r.from) : null, r.truncated);
      if (eof) return 'eof';
      taken += r.data.length;
    }
    return 'more';
  }

  /**
   * The consumer stream's native reader (DESIGN.md section 1) on this socket's one poll handle; it ends
   * with the socket. What it reads is accounted with accountRead / readFailed, as pull() accounts its reads.
   */
  startReader(opts: ReaderOptions, onRead: ReaderCallback): StreamReader {
    this.guard('recvmsg');
    return this.watcher.read(opts, onRead);
  }

  /** A chunk (one `data` event, the bytes attached for listeners only while they run) or EOF (`eof`) the reader took. */
  accountRead(data: Buffer, eof: boolean): void {
    this.lastActive = Date.now();
    this.received(data, eof);
  }

  /** A read error of the reader, reported as recv's would be (lastError and `error` when asynchronous). */
  readFailed(e: unknown): SockctlError {
    return this.fail(e, 'recv');
  }

  /**
   * All sockets run as one OS user, so the kernel's rule that only the same user may share a port through
   * SO_REUSEPORT (or SO_REUSEADDR on UDP) does not separate the service's users: the service enforces it.
   */
  private sharesPorts(): boolean {
    const on = (name: 'SO_REUSEPORT' | 'SO_REUSEADDR') => native.getsockoptInt(this.fd, C.SOL_SOCKET, C[name]) !== 0;
    return on('SO_REUSEPORT') || (this.type !== 'SOCK_STREAM' && on('SO_REUSEADDR'));
  }

  /** The local port the kernel holds for this socket, or null (unbound, Unix, closed). */
  localPort(): number | null {
    if (!this.isOpen || this.family === 'AF_UNIX') return null;
    const sa = native.getsockname(this.fd);
    return 'port' in sa && sa.port !== 0 ? sa.port : null;
  }

  /** Resolves when the fd is readable/writable ('ready') or the socket closed ('closed'). No deadline. */
  whenReady(what: 'readable' | 'writable', signal?: AbortSignal): Promise<WaitOutcome> {
    return this.watcher.wait(what, Infinity, signal);
  }

  /** shutdown(2). The state stays; the halves show in `shutdown`. */
  shutdown(how: 'SHUT_RD' | 'SHUT_WR' | 'SHUT_RDWR'): void {
    this.guard('shutdown');
    this.sys(`shutdown ${how}`, () => native.shutdown(this.fd, C[how]));
    if (how !== 'SHUT_WR') this.shutdownFlags.read = true;
    if (how !== 'SHUT_RD') this.shutdownFlags.write = true;
    this.ctx.events.emit(this.id, 'shutdown', { how });
  }

  getOptions(): SocketOptions {
    this.guard('getsockopt');
    return this.sys('getsockopt', () => readOptions(this.fd, this.behaviour.domain, C[this.type]));
  }

  /** setsockopt(2) for each option in order, then every option as the kernel now reads it. */
  setOptions(values: SocketOptions): SocketOptions {
    this.guard('setsockopt');
    const readOnly = readOnlyNames(values);
    if (readOnly.length > 0) throw errors.badRequest(`read-only option(s): ${readOnly.join(', ')}`);
    for (const [key, value] of Object.entries(values) as [keyof SocketOptions, unknown][]) {
      if (value === undefined) continue;
      this.sys(`setsockopt ${key}`, () => writeOption(this.fd, key, value));
      if (key === 'SO_RCVTIMEO') this.rcvTimeoMs = value as number;
      if (key === 'SO_SNDTIMEO') this.sndTimeoMs = value as number;
    }
    return this.getOptions();
  }

  /**
   * close(2); with `reset`, SO_LINGER {1, 0} first so that the peer sees RST. Pending waits end first
   * (their calls fail with EBADF), then the fd closes, the bound Unix path goes, and `closed` is emitted.
   */
  close(reason: string, reset = false): void {
    this.guard('close');
    if (reset) this.sys('setsockopt SO_LINGER', () => native.setsockoptLinger(this.fd, { onoff: true, linger: 0 }));
    this.refreshAddresses();
    this.watcher.close();
    native.close(this.fd);
    this.unlinkOnClose?.();
    for (const release of this.releases.splice(0)) release();
    this.closedAt = new Date();
    this.closeReason = reason;
    this.transition('closed');
    this.ctx.events.emit(this.id, 'closed', { reason, reset });
    this.ctx.onClosed(this);
  }

  /** Runs `release` when the socket closes (what others hold on its behalf: retained stream bytes). */
  onClose(release: () => void): void {
    if (this.isOpen) this.releases.push(release);
    else release();
  }

  /** The resource of DESIGN.md section 3, read from the kernel now (the last values, once closed). */
  toResource(view?: 'sockaddr'): Socket {
    if (this.isOpen) this.refreshAddresses();
    const local = this.lastLocal && !isUnbound(this.lastLocal, this.type === 'SOCK_RAW') ? this.lastLocal : null;
    const remote = this.lastRemote;
    const isTcp = this.stream && this.family !== 'AF_UNIX';
    const pair = this.connection ?? { local, remote };
    const kernel = this.isOpen
      ? kernelView(this.fd, this.behaviour.domain, C[this.type], pair)
      : isTcp
        ? closedKernelView(pair.local, pair.remote)
        : {};
    const resource: Socket = {
      id: this.id,
      fd: this.fd,
      family: this.family,
      type: this.type,
      protocol: this.protocol,
      state: this.current,
      local: local ? wireAddress(local) : null,
      remote: remote ? wireAddress(remote) : null,
      shutdown: { ...this.shutdownFlags },
      listener: this.listener,
      backlog: this.backlog,
      pending: this.current === 'listening' ? (kernel.acceptQueue ?? null) : null,
      label: this.label,
      createdAt: this.createdAt.toISOString(),
      closedAt: this.closedAt?.toISOString() ?? null,
      closeReason: this.closeReason,
      stats: { ...this.stats },
      lastError: this.lastError,
      kernel,
    };
    if (view === 'sockaddr')
      resource.sockaddr = {
        local: local ? sockaddrView(local) : null,
        remote: remote ? sockaddrView(remote) : null,
      };
    return resource;
  }

  /** getsockname/getpeername now; a closed socket keeps the last values read. */
  private refreshAddresses(): void {
    try {
      this.lastLocal = native.getsockname(this.fd);
    } catch {
      this.lastLocal = null;
    }
    // only a connected (or connecting) socket can have a peer: elsewhere getpeername is a certain ENOTCONN,
    // and a thrown error costs more than the rest of a GET
    if (this.current === 'connected' || this.current === 'connecting') {
      try {
        this.lastRemote = native.getpeername(this.fd);
      } catch {
        this.lastRemote = null;
      }
    } else this.lastRemote = null;
    if (this.lastLocal && this.lastRemote) this.connection = { local: this.lastLocal, remote: this.lastRemote };
  }

  /** Every operation checks the state first: a closed socket never reaches the kernel. */
  private guard(syscall: string): void {
    if (this.current === 'closed') throw errors.closed(this.id, syscall);
    this.lastActive = Date.now();
  }

  /**
   * listen() on an unbound inet socket binds it to the wildcard address: a server reachable from every
   * interface, which the bind policy must allow as if the user had asked for it. The ephemeral port that
   * a connect or a datagram sendto binds is not checked: it is what every client on the host gets (a
   * deliberate choice: refusing it would break the plainest UDP client of every lab).
   */
  private authorizeImplicitBind(): void {
    if (this.family === 'AF_UNIX' || this.type === 'SOCK_RAW') return;
    if (!isUnbound(native.getsockname(this.fd))) return;
    const any = this.family === 'AF_INET' ? '0.0.0.0' : '::';
    try {
      this.ctx.access.authorize(this.user, 'bind', { family: C[this.family], address: any, port: 0 });
    } catch (e) {
      if (e instanceof SockctlError)
        e.message = `${e.message}; listen on an unbound socket binds ${any} (every interface): bind it to a loopback address first`;
      throw e;
    }
  }

  /** The wait of one call: its timeoutMs, else the socket's SO_RCVTIMEO/SO_SNDTIMEO, else the cap. */
  private waitFor(timeoutMs: number | undefined, socketDefault: number): number {
    const wanted = timeoutMs ?? (socketDefault > 0 ? socketDefault : this.ctx.maxWaitMs);
    return Math.min(wanted, this.ctx.maxWaitMs);
  }

  /** Runs one syscall, turning its failure into the user's error (and lastError when asynchronous). */
  private sys<T>(what: string, call: () => T): T {
    try {
      return call();
    } catch (e) {
      throw this.fail(e, what);
    }
  }

  /** sys() for a call that may wait (retryUntilReady): what came at once is returned as it is, not in a promise. */
  private sysWait<T>(what: string, call: () => T | Promise<T>): T | Promise<T> {
    let r: T | Promise<T>;
    try {
      r = call();
    } catch (e) {
      throw this.fail(e, what);
    }
    return r instanceof Promise
      ? r.catch((e: unknown) => {
          throw this.fail(e, what);
        })
      : r;
  }

  private fail(e: unknown, what: string): SockctlError {
    if (e instanceof SockctlError) return e;
    if (e instanceof ClosedWhileWaiting) return errors.closed(this.id, what.split(' ')[0]!);
    // EPIPE is the peer's doing only on a connection (on a never-connected TCP socket it is local)
    const asynchronous = isSysError(e) && ASYNC_ERRNOS.includes(e.code) && (e.code !== 'EPIPE' || this.current === 'connected');
    if (asynchronous) {
      this.lastError = { code: e.code, errno: e.errno, syscall: e.syscall, message: e.message };
      this.ctx.events.emit(this.id, 'error', { ...this.lastError });
    }
    return fromSysError(e, what, this.id);
  }
}

/**
 * A Unix stream connect into a full backlog answers EAGAIN, and no poll event says when room frees up
 * (the connecting socket is not linked to the listener yet), so a blocking connect is emulated by
 * retrying with a short, growing pause until the deadline.
 */
async function unixConnectWhenRoom(fd: number, sa: SockAddr, deadline: Deadline, isOpen: () => boolean): Promise<void> {
  for (let pause = 2; ; pause = Math.min(pause * 2, 50)) {
    const left = deadline.remaining();
    if (left <= 0) return native.connect(fd, sa); // throws the EAGAIN the caller reports
    await new Promise((r) => setTimeout(r, Math.min(pause, left)));
    if (!isOpen()) throw new ClosedWhileWaiting();
    try {
      return native.connect(fd, sa);
    } catch (e) {
      if (!isErrno(e, 'EAGAIN')) throw e;
    }
  }
}

/** An unnamed Unix sender is reported as null (DESIGN.md section 3). */
function nullIfUnnamed(sa: SockAddr) {
  return 'path' in sa && sa.path === null ? null : wireAddress(sa);
}

/**
 * The syscall addon (native/sockctl.c), built by node-gyp into build/Release/sockctl.node.
 *
 * Rules every function keeps:
 * - one call is one syscall (or the obvious pair, e.g. recvmsg + its flags); no retries, no hidden state;
 * - a failure throws an Error whose `code` is the errno name (strerrorname_np), `errno` the number,
 *   `syscall` the syscall name ("bind", "connect", ...), message "<syscall>: <strerror>";
 *   `syscall` is the real syscall: accept → "accept4", send → "send" or "sendto" (with `to`),
 *   sendv → "sendmsg", recv → "recvmsg", the sockopt functions and tcpInfo → "getsockopt"/"setsockopt",
 *   ioctlInt → "ioctl", unixQueue → "fstat", "socket", "sendmsg" or "recvmsg" (the one that failed; an error
 *   the kernel answers over netlink comes through "recvmsg"), tcpDiagState → "socket", "sendmsg" or "recvmsg", createPoller → "uv_poll_init",
 *   Poller.start → "uv_poll_start"; the reader's
 *   read errors → "recvmsg" (passed to its callback, not thrown), Poller.startReading on a non-stream fd →
 *   EOPNOTSUPP with syscall "startReading" (no syscall refuses it: the reader does);
 * - an address string inet_pton rejects throws code "EINVAL" (errno 22), message
 *   "<syscall>: invalid address '<addr>'"; a Unix path longer than sun_path throws "ENAMETOOLONG";
 *   an unknown family throws "EAFNOSUPPORT" (all without making the syscall);
 * - every fd the addon creates is SOCK_NONBLOCK | SOCK_CLOEXEC (socket, socketpair, accept4, and the
 *   netlink socket unixQueue and tcpDiagState open and close within the call);
 * - argument errors (wrong JS types) throw a TypeError with code "ERR_INVALID_ARG_TYPE"; numbers out of
 *   range (a non-integer, a port > 65535, an fd beyond int32...) a RangeError with code "ERR_OUT_OF_RANGE".
 */

/**
 * An address as the kernel holds it. `path` null = unnamed Unix socket (given to bind: autobind to a
 * kernel-chosen abstract name); a leading "@" = abstract namespace. flowinfo is in host byte order.
 * { family: AF_UNSPEC } (any other fields ignored) is accepted too: connect() to it dissolves a UDP association.
 */
export type SockAddr =
  | { family: number /* AF_INET or AF_INET6 */; address: string; port: number; flowinfo?: number; scopeId?: number }
  | { family: number /* AF_UNIX */; path: string | null };

export interface RecvResult {
  /** The bytes read (a fresh Buffer of length min(maxBytes, what was read)). */
  data: Buffer;
  /** The syscall's return value: with MSG_TRUNC on a datagram this is the real datagram length. */
  length: number;
  /** msg_flags & MSG_TRUNC. */
  truncated: boolean;
  /** recvmsg's msg_name, null when the kernel gave none (connected stream, unnamed Unix sender). */
  from: SockAddr | null;
}

export interface Linger { onoff: boolean; linger: number }

export interface TcpInfo {
  state: number;          // tcpi_state (TCP_ESTABLISHED = 1 ... TCP_CLOSING = 11)
  caState: number;
  retransmits: number;
  probes: number;
  backoff: number;
  rto: number;            // microseconds
  ato: number;
  sndMss: number;
  rcvMss: number;
  unacked: number;        // for a listener: current accept-queue length
  sacked: number;         // for a listener: backlog
  lost: number;
  retrans: number;
  lastDataSent: number;   // ms
  lastDataRecv: number;
  pmtu: number;
  rcvSsthresh: number;
  rtt: number;            // microseconds
  rttvar: number;
  sndSsthresh: number;
  sndCwnd: number;
  advmss: number;
  reordering: number;
  totalRetrans: number;
}

/**
 * The reader's callback, one per readable event that read something, hit EOF or failed: `table` holds the
 * slots filled (in stream order) and how many bytes each holds, as `count` pairs [slot, length] from its
 * start (the reader's one Uint32Array, rewritten for every callback: read it during the call); `eof` when
 * recvmsg returned 0 (after the data of this call: reading is over); `error` when recvmsg failed (an Error
 * with code, errno, syscall "recvmsg", after the data of this call; reading is paused until
 * resumeReading()). Each slot listed is JS's until release(slot): its bytes are
 * `new Uint8Array(pool, slot * slotBytes, length)`. `written`: in direct mode (setDirect), how many bytes
 * of these slots' WebSocket frames (headers included, in order) the addon already wrote to the direct fd;
 * 0 when it wrote none (off, the gate shut, the fd's buffer full or an error), and then JS sends them all.
 * Less than all: JS writes the rest of the frame it stopped in first.
 */
export type ReadCallback = (
  table: Uint32Array,
  count: number,
  eof: boolean,
  error: (Error & { code: string; errno: number; syscall: string }) | null,
  written: number,
) => void;

export interface PollerStats {
  /** libuv poll callbacks so far (JS waits and reader alike): a poll left armed while idle shows here. */
  wakeups: number;
  /** recvmsg calls of the reader. */
  reads: number;
  /** Readable events where the reader found nothing to read (EAGAIN at once). */
  emptyReads: number;
  /** Calls of the reader's callback. */
  readCallbacks: number;
  /** The events the poll is armed with now (POLL_READABLE | POLL_WRITABLE; 0 = stopped). */
  armed: number;
  reading: boolean;
  slots: number;
  freeSlots: number;
  paused: boolean;
  eof: boolean;
  /** Direct mode is on (setDirect). */
  direct: boolean;
  /** Direct mode's sendmsg calls that wrote something, the bytes they wrote, and those that wrote only part. */
  directWrites: number;
  directBytes: number;
  directPartial: number;
}

/**
 * A readiness watch on one fd (uv_poll). At most one Poller per fd (libuv allows one poll handle per fd),
 * so it serves two users: one-shot JS waits (start/stop) and the streaming reader (startReading...). The
 * poll is armed with the union of the two and stopped when neither needs it.
 */
export interface Poller {
  /**
   * Arm the one-shot wait for `events` (POLL_READABLE | POLL_WRITABLE). The callback given to createPoller
   * is called at most once per start, when one of these events fires: they are cleared inside the libuv
   * callback before JS runs (level-triggered polling would busy-loop); the callback gets the ones that
   * fired. Calling start while armed re-arms with the new events. The reader's interest is separate.
   */
  start(events: number): void;
  /** Disarm the one-shot wait; no callback follows. Idempotent. The reader, if any, goes on. */
  stop(): void;
  /**
   * Stop and release the uv handle (uv_close); no callback follows and start() then throws EBADF.
   * Stops the reader too (as stopReading). Must be called before the fd is closed (native.close(fd) closes
   * any Poller still open on that fd first, as a safety net). Idempotent. A Poller that is garbage-collected
   * is closed by its finalizer: keep a reference while waiting on it.
   */
  close(): void;
  /**
   * Reading mode, for a SOCK_STREAM fd (anything else throws EOPNOTSUPP, syscall "startReading"): allocates
   * a pool of `slots` slots of `slotBytes` once and returns it (an ArrayBuffer over anonymous mmap'd memory,
   * unmapped when the ArrayBuffer is collected, so views of it stay valid after the reader stops). While reading is on, not paused, not at EOF and a slot is free, the
   * poll stays armed for readable; each readable event reads with recvmsg(MSG_DONTWAIT) into free slots
   * until EAGAIN, a short read, `budgetBytes` or no free slot, then calls `onRead` once (napi_make_callback,
   * like the wait callback; an exception goes to process 'uncaughtException'). Throws ERR_INVALID_STATE if
   * already reading. slots 1..1024, slotBytes 1..64 MiB, the pool at most 1 GiB.
   */
  startReading(slots: number, slotBytes: number, budgetBytes: number, onRead: ReadCallback): ArrayBuffer;
  /**
   * Gives a slot back to the reader (call it once the bytes were written out, e.g. from the write's
   * completion callback: not when a write call returns). Re-arms the poll if the pool was empty. Returns
   * false (and does nothing) when the slot is not held: released already, or the reader stopped.
   */
  release(slot: number): boolean;
  /**
   * Direct mode of the reader: each readable event's slots go out as WebSocket binary frames (server to
   * client: FIN, opcode 2, unmasked, a 2- or 4-byte header) of at most `frameBytes` (1..65535), in one
   * sendmsg(MSG_DONTWAIT | MSG_NOSIGNAL) to `fd` before the callback runs, whenever `gate[0]` is nonzero
   * then; the callback's `written` says how much went. `fd` is a connection JS owns: JS keeps the gate at 0
   * while it has bytes of its own queued there, and before that fd can close. setDirect(-1) ends it (also
   * ended with the reader). Returns false (and does nothing) without a reader.
   */
  setDirect(fd: number, gate?: Int32Array, frameBytes?: number): boolean;
  /** Stop reading (no read interest, no callback) until resumeReading(). No-op without a reader. */
  pauseReading(): void;
  /** Read again after pauseReading() or an error. No-op without a reader; nothing more after EOF. */
  resumeReading(): void;
  /** Ends the reading mode: no callback follows, slots JS still holds need no release. Idempotent. */
  stopReading(): void;
  /** Counters and the reader's state, for tests and diagnostics. */
  stats(): PollerStats;
}

export type ConstantName =
  | 'AF_INET'
  | 'AF_INET6'
  | 'AF_UNIX'
  | 'AF_UNSPEC'
  | 'SOCK_STREAM'
  | 'SOCK_DGRAM'
  | 'SOCK_SEQPACKET'
  | 'SOCK_RAW'
  | 'IPPROTO_IP'
  | 'IPPROTO_IPV6'
  | 'IPPROTO_TCP'
  | 'IPPROTO_UDP'
  | 'IPPROTO_ICMP'
  | 'IPPROTO_ICMPV6'
  | 'SOL_SOCKET'
  | 'SO_REUSEADDR'
  | 'SO_REUSEPORT'
  | 'SO_KEEPALIVE'
  | 'SO_BROADCAST'
  | 'SO_RCVBUF'
  | 'SO_SNDBUF'
  | 'SO_LINGER'
  | 'SO_TYPE'
  | 'SO_ERROR'
  | 'SO_RCVTIMEO'
  | 'SO_SNDTIMEO'
  | 'SO_ACCEPTCONN'
  | 'SO_DOMAIN'
  | 'SO_PROTOCOL'
  | 'SO_OOBINLINE'
  | 'SO_RCVLOWAT'
  | 'SO_SNDLOWAT'
  | 'SO_PRIORITY'
  | 'SO_DONTROUTE'
  | 'TCP_NODELAY'
  | 'TCP_MAXSEG'
  | 'TCP_KEEPIDLE'
  | 'TCP_KEEPINTVL'
  | 'TCP_KEEPCNT'
  | 'TCP_CORK'
  | 'TCP_QUICKACK'
  | 'TCP_INFO'
  | 'TCP_USER_TIMEOUT'
  | 'IP_TTL'
  | 'IP_TOS'
  | 'IP_MULTICAST_TTL'
  | 'IP_MULTICAST_LOOP'
  | 'IP_RECVERR'
  | 'IPV6_V6ONLY'
  | 'IPV6_UNICAST_HOPS'
  | 'IPV6_MULTICAST_HOPS'
  | 'MSG_PEEK'
  | 'MSG_WAITALL'
  | 'MSG_TRUNC'
  | 'MSG_DONTWAIT'
  | 'MSG_OOB'
  | 'MSG_NOSIGNAL'
  | 'MSG_MORE'
  | 'MSG_DONTROUTE'
  | 'MSG_EOR'
  | 'MSG_CONFIRM'
  | 'SHUT_RD'
  | 'SHUT_WR'
  | 'SHUT_RDWR'
  | 'SIOCINQ'
  | 'SIOCOUTQ'
  | 'FIONREAD'
  | 'SOMAXCONN'
  | 'POLL_READABLE'
  | 'POLL_WRITABLE'
  | 'EAGAIN'
  | 'EWOULDBLOCK'
  | 'EINPROGRESS'
  | 'EALREADY'
  | 'EISCONN'
  | 'ENOTCONN'
  | 'ECONNREFUSED'
  | 'ECONNRESET'
  | 'ECONNABORTED'
  | 'EPIPE'
  | 'EADDRINUSE'
  | 'EADDRNOTAVAIL'
  | 'EBADF'
  | 'EINVAL'
  | 'ETIMEDOUT'
  | 'EMFILE'
  | 'ENFILE'
  | 'ENOBUFS'
  | 'ENOMEM'
  | 'EHOSTUNREACH'
  | 'ENETUNREACH'
  | 'EOPNOTSUPP'
  | 'EPROTOTYPE'
  | 'EDESTADDRREQ'
  | 'EMSGSIZE'
  | 'ENOENT'
  | 'EACCES'
  | 'EPERM'
  | 'ENOPROTOOPT'
  | 'ENAMETOOLONG'
  | 'EAFNOSUPPORT'
  | 'EPROTONOSUPPORT'
  | 'ESOCKTNOSUPPORT'
  | 'ENOTSOCK'
  | 'EINTR';

export interface Native {
  socket(domain: number, type: number, protocol: number): number;
  /** socketpair(domain, type|NONBLOCK|CLOEXEC, protocol) */
  socketpair(domain: number, type: number, protocol: number): [number, number];
  bind(fd: number, addr: SockAddr): void;
  listen(fd: number, backlog: number): void;
  /** accept4(fd, NONBLOCK|CLOEXEC); returns the new fd and the peer address. Throws EAGAIN when the queue is empty. */
  accept(fd: number): { fd: number; remote: SockAddr | null };
  /** One connect(2). Throws EINPROGRESS, EALREADY, EISCONN, ECONNREFUSED... as the kernel answers. */
  connect(fd: number, addr: SockAddr): void;
  /** sendto(2) (to = null/undefined: send(2)); MSG_NOSIGNAL is always added. Returns bytes queued. */
  send(fd: number, data: Uint8Array, flags: number, to?: SockAddr | null): number;
  /**
   * sendmsg(2) with an iovec over `chunks` (writev semantics), MSG_NOSIGNAL added. Returns bytes queued.
   */
  sendv(fd: number, chunks: Uint8Array[], flags: number): number;
  /** recvmsg(2) into a buffer of maxBytes (maxBytes may be 0). Throws EAGAIN when nothing is there. */
  recv(fd: number, maxBytes: number, flags: number): RecvResult;
  /**
   * recvmsg(2) of up to maxBytes (at most into.length) into `into`, with no msg_name: for connected stream
   * sockets, where there is no sender to name and nothing to truncate. Returns the byte count (0: EOF);
   * throws EAGAIN when nothing is there. Unlike recv it allocates nothing.
   */
  recvInto(fd: number, into: Uint8Array, maxBytes: number, flags: number): number;
  shutdown(fd: number, how: number): void;
  close(fd: number): void;
  /** getsockname(2), as the kernel says it: an unbound inet socket gives port 0 and the any address, an unnamed Unix socket path null. */
  getsockname(fd: number): SockAddr;
  getpeername(fd: number): SockAddr;
  getsockoptInt(fd: number, level: number, name: number): number;
  setsockoptInt(fd: number, level: number, name: number, value: number): void;
  getsockoptLinger(fd: number): Linger;
  setsockoptLinger(fd: number, value: Linger): void;
  /** SO_RCVTIMEO / SO_SNDTIMEO as milliseconds. */
  getsockoptTimeval(fd: number, level: number, name: number): number;
  setsockoptTimeval(fd: number, level: number, name: number, ms: number): void;
  /** getsockopt(IPPROTO_TCP, TCP_INFO). */
  tcpInfo(fd: number): TcpInfo;
  /** ioctl(fd, request, &int) for SIOCINQ / SIOCOUTQ (and FIONREAD). */
  ioctlInt(fd: number, request: number): number;
  /**
   * Detaches a reader's pool (the ArrayBuffer startReading returned) so that its memory goes now: every
   * view of it reads empty, and the mapping is unmapped. Only for a stopped reader with every slot back.
   * Throws ERR_INVALID_ARG_TYPE for anything but an ArrayBuffer.
   */
  detachPool(pool: ArrayBuffer): void;
  /**
   * The C library's malloc: keep up to `trimBytes` of freed memory at the top of the heap instead of
   * returning it to the kernel, and serve requests under `mmapBytes` (at most 32 MiB) from the heap
   * (mallopt M_TRIM_THRESHOLD and M_MMAP_THRESHOLD; both settings end glibc's sliding thresholds). For
   * the service process only (main.ts). Throws EINVAL ("mallopt") if the C library refuses.
   */
  keepFreedHeap(trimBytes: number, mmapBytes: number): void;
  /** Bytes of reader pools (startReading) mapped now, in the whole process: for tests and diagnostics. */
  readerPoolBytes(): number;
  /** Count of open descriptors of this process (readdir /proc/self/fd minus the dir fd). For leak tests. */
  fdCount(): number;
  /**
   * A Unix socket's queues from the kernel's sock_diag netlink interface (linux/unix_diag.h), the one way
   * to read a Unix listener's accept queue: fstat(fd) for its inode, then one SOCK_DIAG_BY_FAMILY request
   * (AF_UNIX, udiag_ino = that inode, UDIAG_SHOW_RQLEN) on a NETLINK_SOCK_DIAG socket opened with
   * SOCK_NONBLOCK | SOCK_CLOEXEC and closed before returning or throwing, whatever happens (so several
   * syscalls, the exception to "one call is one syscall"). The kernel answers during the sendmsg; the
   * socket is non-blocking only so that a missing answer throws EAGAIN ("recvmsg") instead of blocking.
   *
   * For a listener (SO_ACCEPTCONN): rqueue = connections waiting to be accepted, wqueue = its backlog
   * (sk_max_ack_backlog: listen()'s value, capped at somaxconn; the queue may hold one more than that).
   * The lookup is exact, so the kernel answers for a socket in any state: for one that is not listening,
   * rqueue and wqueue are its receive and send queue bytes (SIOCINQ/SIOCOUTQ's values).
   *
   * null when the kernel knows no AF_UNIX socket with that inode (an inet socket, a socket of another
   * network namespace; also a kernel without unix_diag, which gives the same ENOENT). An fd that is not a
   * socket throws ENOTSOCK with syscall "unixQueue" (fstat succeeded: no syscall refuses it, we do); a
   * closed fd throws EBADF from "fstat".
   */
  unixQueue(fd: number): { rqueue: number; wqueue: number } | null;
  /**
   * The kernel's TCP state (include/net/tcp_states.h: 1 ESTABLISHED ... 6 TIME_WAIT, 8 CLOSE_WAIT, 10 LISTEN,
   * 12 NEW_SYN_RECV is reported as 3 SYN_RECV) of the TCP connection whose local and remote address are
   * these, whether or not this process holds a descriptor of it: one exact SOCK_DIAG_BY_FAMILY lookup
   * (linux/inet_diag.h, inet_diag_req_v2 without NLM_F_DUMP; the kernel's inet_diag_find_one_icsk, which
   * finds full, TIME_WAIT and request sockets) on a NETLINK_SOCK_DIAG socket opened with
   * SOCK_NONBLOCK | SOCK_CLOEXEC and closed before returning or throwing (as unixQueue: socket, sendmsg,
   * recvmsg). A connection that lingers after close() in FIN_WAIT2 is reported as 5, as /proc/net/tcp does.
   *
   * Both AF_INET: an AF_INET lookup. Otherwise an AF_INET6 one, an AF_INET side given as ::ffff:a.b.c.d
   * (with both sides v4-mapped the kernel looks in the IPv4 table, where dual-stack sockets are too, so
   * either form finds either kind of socket). idiag_if is the local address's scopeId (0 unless link-local:
   * such a socket is bound to that interface). flowinfo is ignored.
   *
   * null when the kernel knows no such connection (it answers ENOENT; a kernel without tcp_diag answers
   * the same) and when the lookup's fallback to listeners found a listener on the local port, whose own id
   * is not this pair (the reply's addresses and ports are checked against the pair asked for; a listener is
   * answered, 10, only when asked for with its own id: its address and { 0.0.0.0 or ::, port 0 }).
   * Errors: an address inet_pton rejects → EINVAL, a family other than AF_INET/AF_INET6 → EAFNOSUPPORT,
   * both with syscall "tcpDiagState" and no syscall made; otherwise "socket", "sendmsg" or "recvmsg".
   */
  tcpDiagState(local: SockAddr, remote: SockAddr): number | null;
  /**
   * A readiness poller on fd. callback(status, events): status 0 or a negative libuv error; events the
   * ready set (POLL_READABLE | POLL_WRITABLE). A pending socket error (POLLERR, e.g. a refused connect)
   * comes as status UV_EBADF (-9, libuv's code for it, not the socket's errno) with events set to both,
   * so that waiters retry their syscall and get the real errno from it; a hangup comes as the armed events.
   * The callback runs through napi_make_callback (so nextTicks and microtasks drain after it); an exception
   * it throws goes to process 'uncaughtException'.
   */
  createPoller(fd: number, callback: (status: number, events: number) => void): Poller;
  /** Numeric constants by their C names: AF_*, SOCK_*, IPPROTO_*, SOL_*, SO_*, TCP_*, IP_*, IPV6_*, MSG_*, SHUT_*, SIOCINQ, SIOCOUTQ, POLL_READABLE, POLL_WRITABLE, and errno names (EAGAIN, ...). */
  constants: Record<ConstantName, number>;
}

declare const native: Native;
export default native;

import { fstatSync, readFileSync } from 'node:fs';
import type { KernelView } from '../../schemas/socket.js';
import { C, native, type SockAddr } from '../io/native.js';
import { ipv6Bytes } from './addresses.js';

/** tcpi_state / /proc/net/tcp `st` numbers (include/net/tcp_states.h). */
const TCP_STATES = [
  'UNKNOWN',
  'ESTABLISHED',
  'SYN_SENT',
  'SYN_RECV',
  'FIN_WAIT1',
  'FIN_WAIT2',
  'TIME_WAIT',
  'CLOSE',
  'CLOSE_WAIT',
  'LAST_ACK',
  'LISTEN',
  'CLOSING',
  'NEW_SYN_RECV',
] as const;
const TCP_CLOSE = 7;

export function tcpStateName(n: number): string {
  return TCP_STATES[n] ?? `UNKNOWN(${n})`;
}

/**
 * The kernel's view of an open socket, read now: TCP_INFO and the queue sizes; for a Unix stream or
 * seqpacket listener its accept queue and backlog from sock_diag (Unix sockets have no TCP_INFO); for UDP
 * and raw sockets the drop counter. A TCP socket whose connection the kernel moved to TIME_WAIT reports CLOSE through
 * TCP_INFO (and getpeername fails then), so /proc is asked then too, with `addrs`: the last address pair
 * the socket was seen connected with.
 */
export function kernelView(
  fd: number,
  domain: number,
  type: number,
  addrs: { local: SockAddr | null; remote: SockAddr | null },
): KernelView {
  const view: KernelView = {};
  const isTcp = type === C.SOCK_STREAM && (domain === C.AF_INET || domain === C.AF_INET6);
  if (isTcp) {
    const info = native.tcpInfo(fd);
    view.tcpState = tcpStateName(info.state);
    view.tcpStateSource = 'tcp_info';
    if (info.state === TCP_CLOSE) {
      const lingering = procTcpState(addrs.local, addrs.remote);
      if (lingering) Object.assign(view, { tcpState: lingering, tcpStateSource: 'proc' });
    }
    if (info.state === 10) {
      view.acceptQueue = info.unacked;
      view.backlog = info.sacked;
    } else {
      Object.assign(view, {
        rttUs: info.rtt,
        rttVarUs: info.rttvar,
        rtoUs: info.rto,
        sndCwnd: info.sndCwnd,
        sndMss: info.sndMss,
        retransmits: info.retransmits,
        totalRetrans: info.totalRetrans,
        unacked: info.unacked,
      });
    }
  }
  if (domain === C.AF_UNIX && (type === C.SOCK_STREAM || type === C.SOCK_SEQPACKET)) {
    const queue = unixListenerQueue(fd);
    if (queue) {
      view.acceptQueue = queue.rqueue;
      view.backlog = queue.wqueue;
    }
  }
  // a listener has no byte queues (SIOCINQ fails on it): only the accept queue, as for TCP
  if ((!isTcp || view.tcpState !== 'LISTEN') && view.acceptQueue === undefined) {
    view.recvQueue = safe(() => native.ioctlInt(fd, C.SIOCINQ));
    view.sendQueue = safe(() => native.ioctlInt(fd, C.SIOCOUTQ));
  }
  if (!isTcp && domain !== C.AF_UNIX) {
    const drops = procDrops(fd, domain, type);
    if (drops !== undefined) view.drops = drops;
  }
  return view;
}

/**
 * A Unix listener's accept queue (rqueue) and backlog (wqueue) from sock_diag, or undefined when the
 * socket is not listening (SO_ACCEPTCONN: for any other socket sock_diag would answer byte counts) or the
 * kernel cannot say (no unix_diag, a socket of another network namespace...).
 */
function unixListenerQueue(fd: number): { rqueue: number; wqueue: number } | undefined {
  if (safe(() => native.getsockoptInt(fd, C.SOL_SOCKET, C.SO_ACCEPTCONN)) !== 1) return undefined;
  try {
    return native.unixQueue(fd) ?? undefined;
  } catch {
    return undefined;
  }
}

/**
 * The `drops` column of /proc/net/{udp,udp6,raw,raw6} (sk_drops: datagrams the kernel discarded for this
 * socket, mostly because its receive buffer was full), on the line whose inode is this socket's. Matching
 * on the inode rather than the address keeps SO_REUSEADDR/SO_REUSEPORT siblings apart.
 */
function procDrops(fd: number, domain: number, type: number): number | undefined {
  let inode: string;
  try {
    inode = String(fstatSync(fd).ino);
  } catch {
    return undefined;
  }
  const file = `/proc/net/${type === C.SOCK_RAW ? 'raw' : 'udp'}${domain === C.AF_INET6 ? '6' : ''}`;
  // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
  for (const line of procLines(file)) {
    const cols = line.trim().split(/\s+/);
    if (cols.length >= 13 && cols[9] === inode) return Number(cols[12]);
  }
  return undefined;
}

/** What outlives a closed TCP descriptor (TIME_WAIT, FIN_WAIT2...), from /proc/net/tcp and tcp6. */
export function closedKernelView(local: SockAddr | null, remote: SockAddr | null): KernelView {
  const state = procTcpState(local, remote);
  return state ? { tcpState: state, tcpStateSource: 'proc' } : { tcpState: 'CLOSED', tcpStateSource: 'proc' };
}

function safe(read: () => number): number | undefined {
  try {
    return read();
  } catch {
    return undefined;
  }
}

/**
 * The kernel's TCP state of the connection with this local and remote address, if it knows one: first by an
 * exact sock_diag lookup (native.tcpDiagState: microseconds, where each read of /proc/net/tcp{,6} walks the
 * kernel's whole TCP hash), which finds full, TIME_WAIT and request sockets. /proc is read only when sock_diag
 * cannot answer: the addon threw (EPERM, EOPNOTSUPP... from a sandbox), or this kernel has no tcp_diag
 * (a lookup then answers ENOENT, i.e. null, for every pair: tcpDiagUsable tells the two apart, once).
 * (tcpStateSource stays 'proc' in the API: the state is the kernel table's, whichever way it was read.)
 */
export function procTcpState(local: SockAddr | null, remote: SockAddr | null): string | undefined {
  if (!local || !remote || 'path' in local || 'path' in remote) return undefined;
  if (tcpDiagUsable()) {
    try {
      const state = native.tcpDiagState(local, remote);
      return state === null ? undefined : tcpStateName(state);
    } catch {
      // sock_diag refused (a seccomp or LSM sandbox, no NETLINK_SOCK_DIAG...): the /proc tables below
    }
  }
  return procFileTcpState(local, remote);
}

/** The `st` of the /proc/net/tcp{,6} line whose local and remote address match, if any (the fallback). */
export function procFileTcpState(
  local: { family: number; address: string; port: number },
  remote: { family: number; address: string; port: number },
): string | undefined {
  const want = `${procAddr(local)} ${procAddr(remote)}`;
  const files = local.family === C.AF_INET ? ['/proc/net/tcp', '/proc/net/tcp6'] : ['/proc/net/tcp6'];
  if (snapshot) {
    for (const file of files) {
      const state = procIndex(file).get(want);
      if (state !== undefined) return state;
    }
    return undefined;
  }
  for (const file of files) {
    for (const line of procLines(file)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length > 3 && `${cols[1]} ${cols[2]}` === want) return tcpStateName(parseInt(cols[3]!, 16));
    }
  }
  return undefined;
}

let diagUsable: boolean | undefined;

/**
 * Whether a null from tcpDiagState means "no such connection" here, checked once per process: a kernel
 * without tcp_diag (CONFIG_INET_DIAG off, the module not loadable) answers ENOENT to every lookup, as for a
 * pair it does not know. The probe is a TCP listener on the wildcard address (no interface needed, lo may be
 * down in a fresh network namespace), which the exact lookup of (its address, 0.0.0.0:0) must find in LISTEN.
 * An addon error is not decided here: procTcpState falls back on it call by call.
 */
function tcpDiagUsable(): boolean {
  if (diagUsable !== undefined) return diagUsable;
  let fd: number;
  try {
    fd = native.socket(C.AF_INET, C.SOCK_STREAM, 0);
  } catch {
    return true; // no fd for the probe now (EMFILE...): the lookup runs, the probe again next time
  }
  try {
    native.bind(fd, { family: C.AF_INET, address: '0.0.0.0', port: 0 });
    native.listen(fd, 1);
    diagUsable = native.tcpDiagState(native.getsockname(fd), { family: C.AF_INET, address: '0.0.0.0', port: 0 }) === 10;
    return diagUsable;
  } catch {
    return true; // undecided (sock_diag refused, no port...): procTcpState falls back per call on errors
  } finally {
    native.close(fd);
  }
}

/** The lines of a /proc/net table after its header (read once per withProcSnapshot). */
function procLines(file: string): string[] {
  const cached = snapshot?.lines.get(file);
  if (cached) return cached;
  let lines: string[];
  try {
    lines = readFileSync(file, 'utf8').split('\n').slice(1);
  } catch {
    lines = [];
  }
  snapshot?.lines.set(file, lines);
  return lines;
}

/** Within withProcSnapshot: each /proc/net table read once, the TCP ones indexed by address pair. */
let snapshot: { lines: Map<string, string[]>; tcp: Map<string, Map<string, string>> } | undefined;

function procIndex(file: string): Map<string, string> {
  let index = snapshot!.tcp.get(file);
  if (!index) {
    index = new Map();
    for (const line of procLines(file)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length > 3) index.set(`${cols[1]} ${cols[2]}`, tcpStateName(parseInt(cols[3]!, 16)));
    }
    snapshot!.tcp.set(file, index);
  }
  return index;
}

/**
 * Runs `fn` (synchronous) with /proc/net/tcp{,6} read at most once each: the kernel monitor looks up many
 * closed sockets per sample, and each read of the table walks the kernel's whole TCP hash (milliseconds).
 * Outside it every lookup reads the table fresh, so a request never sees a stale state.
 */
export function withProcSnapshot<T>(fn: () => T): T {
  if (snapshot) return fn();
  snapshot = { lines: new Map(), tcp: new Map() };
  try {
    return fn();
  } finally {
    snapshot = undefined;
  }
}

/** An address as /proc/net/tcp prints it: each 32-bit word in host (little-endian) order, then :PORT. */
function procAddr(sa: { family: number; address: string; port: number }): string {
  const port = sa.port.toString(16).toUpperCase().padStart(4, '0');
  if (sa.family === C.AF_INET) {
    const b = sa.address.split('.').map(Number);
    return `${[b[3], b[2], b[1], b[0]].map((x) => x!.toString(16).toUpperCase().padStart(2, '0')).join('')}:${port}`;
  }
  const bytes = ipv6Bytes(sa.address);
  let hex = '';
  for (let w = 0; w < 4; w++)
    for (let i = 3; i >= 0; i--) hex += bytes[w * 4 + i]!.toString(16).toUpperCase().padStart(2, '0');
  return `${hex}:${port}`;
}

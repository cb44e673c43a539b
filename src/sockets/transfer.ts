import { isErrno } from '../errors.js';
import { ClosedWhileWaiting, retryUntilReady, type Deadline } from '../io/blocking.js';
import { C, native, type RecvResult, type SockAddr } from '../io/native.js';
import type { FdWatcher } from '../io/watcher.js';

/**
 * send(2) as a blocking call with SO_SNDTIMEO would make it: a stream sends everything, waiting for
 * room in the send buffer; when the wait ends after part of the data went out, the count is returned
 * (like a blocking send interrupted by its timeout), and with nothing sent the EAGAIN is thrown.
 * A datagram is one send, retried while the buffer is full.
 */
export function sendBlocking(
  fd: number,
  watcher: FdWatcher,
  deadline: Deadline,
  data: Buffer,
  flags: number,
  to: SockAddr | null,
  stream: boolean,
): number | Promise<number> {
  if (!stream) return retryUntilReady(watcher, 'writable', deadline, () => native.send(fd, data, flags, to));
  // most sends go out whole in the first call; the rest waits for room as a blocking send(2) does. (No named
  // closure or helper: tsx's keepNames wraps a named closure in __name, a defineProperty, on every call.)
  let first: number;
  try {
    first = native.send(fd, data, flags, to);
  } catch (e) {
    if (!isErrno(e, 'EAGAIN')) throw e;
    first = 0;
  }
  if (first === data.length) return first;
  return (async () => {
    let sent = first;
    do {
      try {
        sent += await retryUntilReady(watcher, 'writable', deadline, () => native.send(fd, data.subarray(sent), flags, to));
      } catch (e) {
        if (sent > 0 && isErrno(e, 'EAGAIN')) return sent;
        throw e;
      }
    } while (sent < data.length);
    return sent;
  })();
}

/** What a stream's recv reads into before its bytes are copied out (larger reads get a buffer of their own). */
const streamScratch = Buffer.allocUnsafeSlow(64 * 1024);

/**
 * recv(2) on a connected stream socket (no sender, nothing truncated): read into a reused buffer, then
 * copy what came into a Buffer from Node's pool. native.recv mallocs each result's memory (whose frees
 * then set off glibc's malloc_consolidate on every 64 KiB free of Node's socket reads) and names its
 * result's properties from C strings: a recv call took 9% more CPU with it (same-run A/B, 3 services a side).
 */
function recvStream(fd: number, maxBytes: number, flags: number): RecvResult {
  const into = maxBytes <= streamScratch.length ? streamScratch : Buffer.allocUnsafeSlow(maxBytes);
  const n = native.recvInto(fd, into, maxBytes, flags);
  const data = Buffer.allocUnsafe(n);
  into.copy(data, 0, 0, n);
  return { data, length: n, truncated: false, from: null };
}

/** One recv(2), waiting for something to read. */
export function recvBlocking(
  fd: number,
  watcher: FdWatcher,
  deadline: Deadline,
  maxBytes: number,
  flags: number,
  stream: boolean,
): RecvResult | Promise<RecvResult> {
  const read = stream ? () => recvStream(fd, maxBytes, flags) : () => native.recv(fd, maxBytes, flags);
  return retryUntilReady(watcher, 'readable', deadline, read);
}

/**
 * MSG_WAITALL with SO_RCVTIMEO on a stream: read until maxBytes or EOF; when the wait ends, return what
 * arrived (or EAGAIN if nothing did). A reset after some data returns the data; the next recv sees it.
 */
export async function recvAll(
  fd: number,
  watcher: FdWatcher,
  deadline: Deadline,
  maxBytes: number,
): Promise<{ data: Buffer; eof: boolean }> {
  const chunks: Buffer[] = [];
  let total = 0;
  for (;;) {
    let r: RecvResult;
    try {
      r = await recvBlocking(fd, watcher, deadline, maxBytes - total, 0, true);
    } catch (e) {
      if (total > 0 && isErrno(e, 'EAGAIN', 'ECONNRESET')) return { data: Buffer.concat(chunks, total), eof: false };
      throw e;
    }
    if (r.length === 0) return { data: Buffer.concat(chunks, total), eof: true };
    chunks.push(r.data);
    total += r.data.length;
    if (total >= maxBytes) return { data: Buffer.concat(chunks, total), eof: false };
  }
}

/**
 * MSG_PEEK | MSG_WAITALL on TCP: wait until maxBytes are queued (or EOF) without consuming them.
 * The kernel's poll honours SO_RCVLOWAT on TCP, so the low-water mark is raised for the wait and put
 * back after, and the wait does not spin on a socket that is readable but short.
 */
export async function peekAll(
  fd: number,
  watcher: FdWatcher,
  deadline: Deadline,
  maxBytes: number,
): Promise<RecvResult> {
  const previous = native.getsockoptInt(fd, C.SOL_SOCKET, C.SO_RCVLOWAT);
  native.setsockoptInt(fd, C.SOL_SOCKET, C.SO_RCVLOWAT, Math.max(1, maxBytes));
  let closed = false;
  try {
    let last: RecvResult | undefined;
    for (;;) {
      try {
        last = recvStream(fd, maxBytes, C.MSG_PEEK);
        if (last.length === 0 || last.data.length >= maxBytes) return last;
      } catch (e) {
        if (!isErrno(e, 'EAGAIN')) throw e;
      }
      const outcome = await watcher.wait('readable', deadline.remaining());
      if (outcome === 'closed') {
        closed = true; // the number may already belong to another socket: touch nothing
        throw new ClosedWhileWaiting();
      }
      if (outcome === 'timeout') {
        if (last) return last;
        return recvStream(fd, maxBytes, C.MSG_PEEK); // throws EAGAIN when nothing came
      }
    }
  } finally {
    if (!closed) native.setsockoptInt(fd, C.SOL_SOCKET, C.SO_RCVLOWAT, previous);
  }
}

import { isErrno } from '../errors.js';
import type { FdWatcher, Readiness } from './watcher.js';

/** A point in time that several waits of one call share (a send that waits more than once, waitAll). */
export class Deadline {
  private readonly end: number;
  constructor(timeoutMs: number) {
    this.end = timeoutMs === Infinity ? Infinity : Date.now() + timeoutMs;
  }
  remaining(): number {
    return this.end === Infinity ? Infinity : Math.max(0, this.end - Date.now());
  }
}

/** Thrown when the fd was closed (by another request) while a call waited on it. */
export class ClosedWhileWaiting extends Error {
  constructor() {
    super('closed while waiting');
  }
}

/**
 * "Blocking" semantics over a non-blocking fd, as DESIGN.md section 1 describes: try the syscall; on
 * EAGAIN (or what `retryOn` names) wait for readiness within the deadline and try again. When the wait
 * ends first, the last syscall error is thrown, as a blocking call with SO_RCVTIMEO/SO_SNDTIMEO would
 * return it. The first try runs at once: when it succeeds (most calls) its result is returned as it is,
 * with no promise; errors then throw synchronously, and only a call that waits is asynchronous.
 */
export function retryUntilReady<T>(
  watcher: FdWatcher,
  what: Readiness,
  deadline: Deadline,
  attempt: () => T,
  retryOn: readonly string[] = ['EAGAIN'],
): T | Promise<T> {
  try {
    return attempt();
  } catch (e) {
    if (!isErrno(e, ...retryOn)) throw e;
    return waitAndRetry(watcher, what, deadline, attempt, retryOn, e);
  }
}

async function waitAndRetry<T>(
  watcher: FdWatcher,
  what: Readiness,
  deadline: Deadline,
  attempt: () => T,
  retryOn: readonly string[],
  failed: unknown,
): Promise<T> {
  let last = failed;
  for (;;) {
    const outcome = await watcher.wait(what, deadline.remaining());
    if (outcome === 'timeout') throw last;
    if (outcome === 'closed') throw new ClosedWhileWaiting();
    try {
      return attempt();
    } catch (e) {
      if (!isErrno(e, ...retryOn)) throw e;
      last = e;
    }
  }
}

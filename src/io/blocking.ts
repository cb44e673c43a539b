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
 * return it.
 */
export async function retryUntilReady<T>(
  watcher: FdWatcher,
  what: Readiness,
  deadline: Deadline,
  attempt: () => T,
  retryOn: readonly string[] = ['EAGAIN'],
): Promise<T> {
  for (;;) {
    try {
      return attempt();
    } catch (e) {
      if (!isErrno(e, ...retryOn)) throw e;
      const outcome = await watcher.wait(what, deadline.remaining());
      if (outcome === 'timeout') throw e;
      if (outcome === 'closed') throw new ClosedWhileWaiting();
    }
  }
}

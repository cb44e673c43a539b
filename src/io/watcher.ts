import assert from 'node:assert/strict';
import { C, native, type Poller } from './native.js';

export type WaitOutcome = 'ready' | 'timeout' | 'closed' | 'cancelled';
export type Readiness = 'readable' | 'writable';

interface Waiter {
  events: number;
  settle: (outcome: WaitOutcome) => void;
  timer: NodeJS.Timeout | undefined;
}

/**
 * Readiness of one fd for any number of concurrent waiters (a recv and a send may wait at once).
 * libuv allows one poll handle per fd, so this class owns that handle and arms it, one-shot, with the
 * union of what its waiters need; the addon stops the poll inside its callback, and the watcher re-arms
 * only while someone still waits (a poll left armed with nobody waiting would wake the loop forever).
 */
export class FdWatcher {
  private poller: Poller | undefined;
  private readonly waiters = new Set<Waiter>();
  private closed = false;

  constructor(private readonly fd: number) {}

  /**
   * Resolves 'ready' when the fd is readable/writable (or errored), 'timeout' after timeoutMs, 'closed' on
   * close(), 'cancelled' when `signal` aborts.
   */
  wait(what: Readiness, timeoutMs: number, signal?: AbortSignal): Promise<WaitOutcome> {
    if (this.closed) return Promise.resolve('closed');
    if (signal?.aborted) return Promise.resolve('cancelled');
    if (timeoutMs <= 0) return Promise.resolve('timeout');
    return new Promise<WaitOutcome>((resolve) => {
      const waiter: Waiter = {
        events: what === 'readable' ? C.POLL_READABLE : C.POLL_WRITABLE,
        timer: undefined,
        settle: (outcome) => {
          if (!this.waiters.delete(waiter)) return;
          if (waiter.timer) clearTimeout(waiter.timer);
          signal?.removeEventListener('abort', onAbort);
          resolve(outcome);
        },
      };
      const onAbort = () => {
        waiter.settle('cancelled');
        this.arm();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      if (Number.isFinite(timeoutMs)) waiter.timer = setTimeout(() => {
        waiter.settle('timeout');
        this.arm();
      }, timeoutMs);
      this.waiters.add(waiter);
      this.arm();
    });
  }

  /** Settles every waiter with 'closed' and releases the poll handle: call before closing the fd. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const w of [...this.waiters]) w.settle('closed');
    this.poller?.close();
    this.poller = undefined;
  }

  get waiting(): number {
    return this.waiters.size;
  }

  private arm(): void {
    if (this.closed) return;
    let events = 0;
    for (const w of this.waiters) events |= w.events;
    if (events === 0) {
      this.poller?.stop();
      return;
    }
    this.poller ??= native.createPoller(this.fd, (status, ready) => this.onReady(status, ready));
    this.poller.start(events);
  }

  private onReady(status: number, ready: number): void {
    assert.ok(!this.closed, 'poll callback after close');
    const mask = status < 0 ? C.POLL_READABLE | C.POLL_WRITABLE : ready;
    for (const w of [...this.waiters]) if (w.events & mask) w.settle('ready');
    this.arm();
  }
}

import assert from 'node:assert/strict';
import type { PollerStats } from '../../native/index.js';
import { C, native, type Poller } from './native.js';

export type WaitOutcome = 'ready' | 'timeout' | 'closed' | 'cancelled';
export type Readiness = 'readable' | 'writable';

interface Waiter {
  events: number;
  settle: (outcome: WaitOutcome) => void;
  timer: NodeJS.Timeout | undefined;
}

/**
 * A reader's readable event (native/index.d.ts ReadCallback), with the slots and their lengths as arrays:
 * the slots filled in stream order, then EOF or the error after their data, and how much of their frames
 * the addon wrote itself in direct mode.
 */
export type ReaderCallback = (
  slots: number[],
  lengths: number[],
  eof: boolean,
  error: (Error & { code: string; errno: number; syscall: string }) | null,
  written: number,
) => void;

export interface ReaderOptions {
  /** Slots in the pool (allocated once per reader). */
  slots: number;
  slotBytes: number;
  /** Bytes read per readable event at most, so that one fast peer cannot starve the event loop. */
  budgetBytes: number;
}

/**
 * The native streaming reader of one fd (the Poller's reading mode, native/index.d.ts): it reads into a
 * fixed pool and hands over filled slots, one callback per readable event. A slot is the caller's until
 * release(slot), which must come once its bytes are written out (a write's completion, not its return).
 * After stop() (or the fd's close) every call is a no-op; views already taken stay valid (V8 owns the pool).
 */
export class StreamReader {
  private readonly pool: Buffer;
  private stopped = false;
  /** Slots handed to the caller and not yet released. */
  private lent = 0;
  private freed = false;

  constructor(
    private readonly poller: Poller,
    private readonly arrayBuffer: ArrayBuffer,
    readonly slotBytes: number,
  ) {
    this.pool = Buffer.from(arrayBuffer);
  }

  /** The native callback handed these slots over (FdWatcher.read counts them here). */
  handedOut(slots: number): void {
    this.lent += slots;
  }

  /** The bytes of a slot handed over by the callback (no copy: valid until release(slot)). */
  view(slot: number, length: number): Buffer {
    const at = slot * this.slotBytes;
    return this.pool.subarray(at, at + length);
  }

  release(slot: number): void {
    this.lent--;
    if (!this.stopped) this.poller.release(slot);
    else this.free();
  }

  /**
   * Direct mode (native/index.d.ts setDirect): the addon writes each read's WebSocket frames to `fd` itself
   * while `gate[0]` is nonzero, for as long as the reader reads.
   */
  direct(fd: number, gate: Int32Array, frameBytes: number): void {
    if (!this.stopped) this.poller.setDirect(fd, gate, frameBytes);
  }

  pause(): void {
    if (!this.stopped) this.poller.pauseReading();
  }

  /** The poll handle's counters (reads, direct writes...) while reading; undefined once stopped. */
  stats(): PollerStats | undefined {
    return this.stopped ? undefined : this.poller.stats();
  }

  resume(): void {
    if (!this.stopped) this.poller.resumeReading();
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.poller.stopReading();
    this.free();
  }

  get active(): boolean {
    return !this.stopped;
  }

  /** The poller closed (and with it the reader). */
  detached(): void {
    this.stopped = true;
    this.free();
  }

  /**
   * Once stopped with every slot back, the pool (up to ~20 MiB, mmap'd by the addon) is detached, which
   * unmaps it at once. Left to the collector, the pool, old by then, waits for a full mark-compact, and a
   * few closed streams' pools add up to V8's external-memory limit: with a WebSocket → TCP stream
   * allocating 64 KiB per frame, that started back-to-back mark-compacts (25-30 per 512 MiB at 3 CPU-s/GB
   * instead of none at 1.4).
   */
  private free(): void {
    if (!this.stopped || this.lent > 0 || this.freed) return;
    this.freed = true;
    try {
      native.detachPool(this.arrayBuffer);
    } catch {
      // not detachable after all (a runtime that pins it): the pool waits for the collector
    }
  }
}

/**
 * Readiness of one fd for any number of concurrent waiters (a recv and a send may wait at once), and its
 * streaming reader. libuv allows one poll handle per fd, so this class owns that handle: it arms it,
 * one-shot, with the union of what its waiters need (the addon clears that inside its callback, and the
 * watcher re-arms only while someone still waits: a poll left armed with nobody waiting would wake the
 * loop forever); the reader's readable interest is kept by the addon, next to it, on the same handle.
 */
export class FdWatcher {
  private poller: Poller | undefined;
  private readonly waiters = new Set<Waiter>();
  private closed = false;
  private reader: StreamReader | undefined;

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

  /**
   * Starts the native streaming reader on this fd (a SOCK_STREAM), one at a time: `onRead` gets the filled
   * slots of each readable event (see native/index.d.ts ReadCallback). Throws if a reader is active.
   */
  read(opts: ReaderOptions, onRead: ReaderCallback): StreamReader {
    if (this.closed) throw Object.assign(new Error('read: the fd is closed'), { code: 'EBADF', errno: C.EBADF, syscall: 'recvmsg' });
    assert.ok(!this.reader?.active, 'a reader is already active on this fd');
    this.poller ??= this.createPoller();
    // the addon calls onRead from readable events only, never inside startReading: `reader` is set by then
    const pool = this.poller.startReading(opts.slots, opts.slotBytes, opts.budgetBytes, (table, count, eof, error, written) => {
      const slots: number[] = [];
      const lengths: number[] = [];
      for (let i = 0; i < count; i++) {
        slots.push(table[2 * i]!);
        lengths.push(table[2 * i + 1]!);
      }
      reader.handedOut(count);
      onRead(slots, lengths, eof, error, written);
    });
    const reader = new StreamReader(this.poller, pool, opts.slotBytes);
    this.reader = reader;
    return reader;
  }

  /** Settles every waiter with 'closed', stops the reader and releases the poll handle: call before closing the fd. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const w of [...this.waiters]) w.settle('closed');
    this.poller?.close();
    this.poller = undefined;
    this.reader?.detached();
    this.reader = undefined;
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
    this.poller ??= this.createPoller();
    this.poller.start(events);
  }

  private createPoller(): Poller {
    return native.createPoller(this.fd, (status, ready) => this.onReady(status, ready));
  }

  private onReady(status: number, ready: number): void {
    assert.ok(!this.closed, 'poll callback after close');
    const mask = status < 0 ? C.POLL_READABLE | C.POLL_WRITABLE : ready;
    for (const w of [...this.waiters]) if (w.events & mask) w.settle('ready');
    this.arm();
  }
}

import type { Encoding } from '../../schemas/common.js';
import type { EventLog, SockEvent } from './event-log.js';

/** A transport for events (WebSocket, SSE), as the observer needs it. */
export interface EventSink {
  /** Writes one event (already JSON); `seq` is for transports that label events (SSE ids). */
  write(json: string, seq: number): void;
  /** True while the transport holds more than it should: the observer queues instead of writing. */
  congested(): boolean;
}

export interface ObserverOptions {
  /** Only events this returns true for. */
  filter: (event: SockEvent) => boolean;
  /** Events queued while the transport is congested; beyond it the oldest go and a `gap` says how many. */
  capacity: number;
  /** Add copies of the bytes in and out to data/sent events. */
  withData: boolean;
  encoding: Encoding;
  /** Replay events after this seq from the log first. */
  after?: number | undefined;
}

/**
 * One dashboard subscriber (DESIGN.md section 5). It never slows a socket: events arrive synchronously from
 * the log, go straight to the transport while it keeps up, and otherwise wait in a bounded queue that
 * drops its oldest entries, reported by one `gap` event before the next delivered one.
 */
export class Observer {
  private readonly queue: string[] = [];
  private readonly seqs: number[] = [];
  private missed = 0;
  private lastMissedSeq = 0;
  private unsubscribe: (() => void) | undefined;

  constructor(
    private readonly log: EventLog,
    private readonly sink: EventSink,
    private readonly opts: ObserverOptions,
  ) {}

  /** Replays what the log still holds after `after` (a `gap` first if some is gone), then goes live. */
  start(): void {
    if (this.opts.after !== undefined) {
      const { events, missed } = this.log.since(this.opts.after);
      if (missed > 0) this.gap(missed, this.opts.after + missed);
      for (const e of events) if (this.opts.filter(e)) this.offer(JSON.stringify(e), e.seq);
    }
    this.unsubscribe = this.log.subscribe((event, payload) => {
      if (!this.opts.filter(event)) return;
      const withData =
        this.opts.withData && payload !== undefined
          ? { ...event, data: payload.toString(this.opts.encoding), encoding: this.opts.encoding }
          : event;
      this.offer(JSON.stringify(withData), event.seq);
    });
  }

  /** The transport can take more: flush the queue, the gap notice first. */
  drain(): void {
    while (this.queue.length > 0 || this.missed > 0) {
      if (this.sink.congested()) return;
      if (this.missed > 0) {
        const n = this.missed;
        this.missed = 0;
        this.sink.write(JSON.stringify(this.gapEvent(n, this.lastMissedSeq)), this.lastMissedSeq);
        continue;
      }
      this.sink.write(this.queue.shift()!, this.seqs.shift()!);
    }
  }

  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    this.queue.length = 0;
    this.seqs.length = 0;
  }

  get queued(): number {
    return this.queue.length;
  }

  private offer(json: string, seq: number): void {
    if (this.queue.length === 0 && this.missed === 0 && !this.sink.congested()) {
      this.sink.write(json, seq);
      return;
    }
    this.queue.push(json);
    this.seqs.push(seq);
    if (this.queue.length > this.opts.capacity) {
      this.queue.shift();
      this.lastMissedSeq = this.seqs.shift()!;
      this.missed++;
    }
  }

  private gap(missed: number, lastSeq: number): void {
    this.missed += missed;
    this.lastMissedSeq = lastSeq;
    this.drain();
  }

  private gapEvent(missed: number, seq: number): SockEvent {
    return { seq, ts: new Date().toISOString(), socket: '*', type: 'gap', missed };
  }
}

import type { Encoding } from '../../schemas/common.js';
import { isoNow, type EventLog, type SockEvent } from './event-log.js';

/** A transport for events (WebSocket, SSE), as the observer needs it. */
export interface EventSink {
  /** Writes one event (already JSON); `seq` and `type` are for transports that label events (SSE). */
  write(json: string, seq: number, type: string): void;
  /**
   * Optional: writes one event's JSON as UTF-8 bytes that every observer of the event shares (so the
   * transport must not change them). Used for events without per-observer data, instead of write().
   */
  writeShared?(utf8: Buffer): void;
  /** True while the transport holds more than it should: the observer keeps events queued. */
  congested(): boolean;
  /** Optional: group the writes of one flush into one syscall. */
  cork?(): void;
  uncork?(): void;
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

/** Events written per observer per turn of the event loop: the rest wait (or drop) so producers go on. */
const BATCH = 256;

/** One JSON text per event, shared by every observer (events are immutable once emitted). */
const jsonCache = new WeakMap<SockEvent, string>();
function jsonOf(e: SockEvent): string {
  let json = jsonCache.get(e);
  if (json === undefined) jsonCache.set(e, (json = JSON.stringify(e)));
  return json;
}

/**
 * The same as UTF-8 bytes, for transports that send bytes (WebSocket): encoded once, not once per
 * observer. With 100 observers at 10,000 events/s the per-observer copies were 200 MB/s of buffers held
 * in the sockets' write queues: 0.5 s of GC in a 4 s round, 0.4 s without them, and 0.72 µs of CPU per
 * delivered event instead of 0.78 (bench scenario 6).
 */
const utf8Cache = new WeakMap<SockEvent, Buffer>();
function utf8Of(e: SockEvent): Buffer {
  let bytes = utf8Cache.get(e);
  // the text itself is not kept for this: the ring would hold each event's JSON twice
  if (bytes === undefined) utf8Cache.set(e, (bytes = Buffer.from(jsonCache.get(e) ?? JSON.stringify(e))));
  return bytes;
}

interface Entry {
  event: SockEvent;
  /** The bytes as text, for observers that asked for data (encoded at once: payloads are only lent). */
  data?: string;
}

/**
 * One dashboard subscriber (DESIGN.md section 5). It never slows a socket: the log hands it events
 * synchronously and it only queues them (a bounded queue that drops its oldest entries, reported by one
 * `gap` event before the next delivered one); writing happens later, a bounded batch per turn of the
 * event loop, serialised once per event for all observers, and corked into one write per batch.
 */
export class Observer {
  private queue: Entry[] = [];
  private head = 0;
  private missed = 0;
  private lastMissedSeq = 0;
  private scheduled: NodeJS.Immediate | undefined;
  private unsubscribe: (() => void) | undefined;
  private unobserve: (() => void) | undefined;
  private stopped = false;

  constructor(
    private readonly log: EventLog,
    private readonly sink: EventSink,
    private readonly opts: ObserverOptions,
  ) {}

  /** Replays what the log still holds after `after` (a `gap` first if some is gone), then goes live. */
  start(): void {
    if (this.opts.after !== undefined) {
      const { events, missed } = this.log.since(this.opts.after);
      if (missed > 0) {
        this.missed += missed;
        this.lastMissedSeq = this.opts.after + missed;
      }
      for (const e of events) if (this.opts.filter(e)) this.offer({ event: e });
    }
    this.unobserve = this.log.observe();
    this.unsubscribe = this.log.subscribe((event, payload) => {
      if (!this.opts.filter(event)) return;
      this.offer(this.opts.withData && payload !== undefined ? { event, data: payload.toString(this.opts.encoding) } : { event });
    }, { copies: this.opts.withData });
    this.schedule();
  }

  /** The transport can take more. */
  drain(): void {
    if (this.queued > 0 || this.missed > 0) this.schedule();
  }

  stop(): void {
    this.stopped = true;
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    this.unobserve?.();
    if (this.scheduled) clearImmediate(this.scheduled);
    this.queue = [];
    this.head = 0;
  }

  get queued(): number {
    return this.queue.length - this.head;
  }

  private offer(entry: Entry): void {
    this.queue.push(entry);
    if (this.queued > this.opts.capacity) {
      this.lastMissedSeq = this.queue[this.head]!.event.seq;
      this.head++;
      this.missed++;
    }
    this.schedule();
  }

  private schedule(): void {
    if (!this.scheduled && !this.stopped) this.scheduled = setImmediate(() => this.flush());
  }

  private flush(): void {
    this.scheduled = undefined;
    if (this.stopped) return;
    let written = 0;
    this.sink.cork?.();
    try {
      while ((this.queued > 0 || this.missed > 0) && written < BATCH && !this.sink.congested()) {
        written++;
        if (this.missed > 0) {
          const gap: SockEvent = { seq: this.lastMissedSeq, ts: isoNow(), socket: '*', type: 'gap', missed: this.missed };
          this.missed = 0;
          this.sink.write(JSON.stringify(gap), gap.seq, 'gap');
          continue;
        }
        const { event, data } = this.queue[this.head]!;
        this.head++;
        if (data === undefined && this.sink.writeShared) {
          this.sink.writeShared(utf8Of(event));
          continue;
        }
        const json = data === undefined ? jsonOf(event) : `${jsonOf(event).slice(0, -1)},"data":${JSON.stringify(data)},"encoding":"${this.opts.encoding}"}`;
        this.sink.write(json, event.seq, event.type);
      }
    } finally {
      this.sink.uncork?.();
    }
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    // more to write and room for it: go on after the producers had their turn
    if ((this.queued > 0 || this.missed > 0) && !this.sink.congested()) this.schedule();
  }
}

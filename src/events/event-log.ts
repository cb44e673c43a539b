/**
 * The service-wide event log (DESIGN.md section 5): every state change and socket happening becomes
 * one event with a `seq` that grows across the service. A bounded ring keeps recent events for replay;
 * listeners are called synchronously, in seq order, and must not throw or block.
 */
export interface SockEvent {
  seq: number;
  ts: string;
  socket: string;
  type: string;
  [field: string]: unknown;
}

let lastMs = -1;
let lastIso = '';
let lastSecond = -1;
/** `2026-12-04T18:55:52.` of the second being formatted. */
let secondPrefix = '';
/** `.000Z` … `.999Z`, without the dot: the milliseconds and the zone of a timestamp. */
const MS_SUFFIX = Array.from({ length: 1000 }, (_, ms) => `${String(ms).padStart(3, '0')}Z`);

/**
 * `new Date().toISOString()`, formatted once per second (the date and time up to the seconds) plus a
 * table lookup for the milliseconds: events come thousands a second, and a toISOString goes through a
 * time-zone lookup and printf each time (about 7 µs of the 1,000-messages-per-second delivery path, whose
 * every message falls in a new millisecond).
 */
export function isoNow(): string {
  const ms = Date.now();
  if (ms !== lastMs) {
    lastMs = ms;
    const second = Math.floor(ms / 1000);
    if (second !== lastSecond) {
      lastSecond = second;
      secondPrefix = new Date(second * 1000).toISOString().slice(0, 20);
    }
    lastIso = secondPrefix + MS_SUFFIX[ms - second * 1000]!;
  }
  return lastIso;
}

/** `payload` is the bytes of a data/sent event, for observers that asked for copies; never stored. */
export type EventListener = (event: SockEvent, payload?: Buffer) => void;

export class EventLog {
  private readonly ring: (SockEvent | undefined)[];
  private nextSeq = 1;
  private readonly listeners = new Set<EventListener>();
  /** Listeners of one socket's events only (consumer streams): an event costs them nothing elsewhere. */
  private readonly bySocket = new Map<string, Set<EventListener>>();
  /** Listeners that want the bytes of `sent` events (see wantsCopies). */
  private copyListeners = 0;

  constructor(readonly capacity: number) {
    this.ring = new Array<SockEvent | undefined>(capacity);
  }

  /** Appends one event and hands it to every listener. */
  emit(socket: string, type: string, fields: Record<string, unknown> = {}, payload?: Buffer): SockEvent {
    return this.append({ seq: this.nextSeq++, ts: isoNow(), socket, type, ...fields }, payload);
  }

  /**
   * A `data` or `sent` event of a stream: emit() with these fields, built in one object literal of one
   * shape (the per-message path of a stream: no spread of a fields object).
   */
  emitBytes(socket: string, type: 'data' | 'sent', offset: number, bytes: number, payload: Buffer | undefined): SockEvent {
    return this.append({ seq: this.nextSeq++, ts: isoNow(), socket, type, offset, bytes }, payload);
  }

  private append(event: SockEvent, payload: Buffer | undefined): SockEvent {
    this.ring[event.seq % this.capacity] = event;
    for (const l of this.listeners) l(event, payload);
    const own = this.bySocket.get(event.socket);
    if (own) for (const l of own) l(event, payload);
    return event;
  }

  get subscribers(): number {
    let n = this.listeners.size;
    for (const set of this.bySocket.values()) n += set.size;
    return n;
  }

  /** Subscribes to the events of one socket. Returns the unsubscribe. */
  subscribeSocket(socket: string, listener: EventListener): () => void {
    let set = this.bySocket.get(socket);
    if (!set) this.bySocket.set(socket, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0 && this.bySocket.get(socket) === set) this.bySocket.delete(socket);
    };
  }

  private observing = 0;

  /** Dashboards watching (not consumer streams): kernel sampling runs only for them. Returns the release. */
  observe(): () => void {
    this.observing++;
    let released = false;
    return () => {
      if (!released) this.observing--;
      released = true;
    };
  }

  get observers(): number {
    return this.observing;
  }

  /** The seq the next event will get. */
  get headSeq(): number {
    return this.nextSeq;
  }

  /** Events with seq > after still in the ring, oldest first, and how many were already overwritten. */
  since(after: number): { events: SockEvent[]; missed: number } {
    const oldest = Math.max(1, this.nextSeq - this.capacity);
    const from = Math.max(after + 1, oldest);
    const events: SockEvent[] = [];
    for (let s = from; s < this.nextSeq; s++) {
      const e = this.ring[s % this.capacity];
      if (e && e.seq === s) events.push(e);
    }
    return { events, missed: Math.max(0, oldest - (after + 1)) };
  }

  /** `copies`: the listener wants the bytes of `sent` events too (observers with ?data=true). */
  subscribe(listener: EventListener, opts: { copies?: boolean } = {}): () => void {
    this.listeners.add(listener);
    if (opts.copies) this.copyListeners++;
    let subscribed = true;
    return () => {
      if (!subscribed) return;
      subscribed = false;
      this.listeners.delete(listener);
      if (opts.copies) this.copyListeners--;
    };
  }

  /** Whether some listener wants the bytes of `sent` events: a batched send joins its buffers only then. */
  get wantsCopies(): boolean {
    return this.copyListeners > 0;
  }
}

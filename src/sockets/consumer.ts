import { setImmediate as yieldToLoop } from 'node:timers/promises';
import type { Encoding } from '../../schemas/common.js';
import { errors, SockctlError } from '../errors.js';
import { isoNow, type EventLog, type SockEvent } from '../events/event-log.js';
import { C, native } from '../io/native.js';
import type { PollerStats } from '../../native/index.js';
import type { StreamReader } from '../io/watcher.js';
import { framesAfter } from '../io/ws-frames.js';
import type { ManagedSocket } from './managed-socket.js';
import { count } from './owner-counts.js';

/** What a consumer stream needs from its transport (a WebSocket in routes/stream.ts). */
export interface ConsumerSink {
  /** One event as JSON text. */
  text(json: string): void;
  /**
   * Bytes as one binary message (binary mode: a datagram or seqpacket message). `done` runs once the
   * transport no longer needs `data` (written out, or failed): the bytes may be a view of a reader's slot,
   * reused after that.
   */
  binary(data: Buffer, done?: () => void): void;
  /**
   * The transport's connection for the native reader's direct mode (binary mode; DESIGN.md section 1 and
   * native/index.d.ts setDirect): its fd, and a gate the sink keeps at 1 only while none of its own writes is
   * pending there and the transport is open, and sets to 0 before the fd can close. Undefined when bytes
   * may not go straight to the fd (TLS, no fd).
   */
  direct?(): { fd: number; gate: Int32Array } | undefined;
  /**
   * Raw bytes for the transport's connection, ahead of anything sent after: a stream's binary frames, made
   * here as the native reader makes them in direct mode (src/io/ws-frames.ts), and the rest of those it
   * wrote in part. `done` as for binary(), except that it may run inside the call (the transport closing).
   */
  raw(chunks: Buffer[], done?: () => void): void;
  /** Batch what follows into one write of the transport (cork/uncork of its socket), or do nothing. */
  cork(): void;
  uncork(): void;
  /** Bytes handed over and not yet written out (WebSocket bufferedAmount). */
  buffered(): number;
  /** Stop / restart taking input from the client (bytes waiting for the socket's send buffer). */
  pauseInput(): void;
  resumeInput(): void;
  /** End the transport (the socket closed). */
  end(code: number, reason: string): void;
}

export interface ConsumerOptions {
  binary: boolean;
  encoding: Encoding;
  autoAccept: boolean;
  /** Resume from this byte offset of the socket's input. */
  offset?: number | undefined;
  highWaterBytes: number;
  writeQueueBytes: number;
  retainBytes: number;
  /** What the socket's owner may hold in retention across all their streams (their `bufferBytes`). */
  userRetainBytes: number;
  retainMs: number;
  /** A graceful close waits this long at most for the peer to acknowledge what was sent. */
  closeFlushMs: number;
}

const READ_CHUNK = 256 * 1024;
/**
 * A stream socket's bytes go out in binary frames of at most this many (a read of up to READ_CHUNK is
 * several frames, views of its slot, in the read's one corked write); a datagram or seqpacket message stays
 * one frame. A receiver holds a whole frame before it hands it over: Node's ws, reading its socket 64 KiB at
 * a time, copies every frame that spans two reads into a buffer of its own, and a frame of 256 KiB always
 * did (so do the relay's 64 KiB ones, with their header). At 16 KiB most frames lie inside one read and
 * are passed on as views. Bench scenario 1 (TCP → WebSocket, medians of 5 rounds, two runs each): with
 * 256 KiB frames 1.06x and 1.07x the relay's GB/s, the bench client spending 1.3-1.5 CPU-s per GB (the
 * relay's 1.2-1.4); with 32 KiB, 1.32x and 1.31x; with 16 KiB, 1.38x and 1.38x at 0.9-1.0 client CPU-s/GB;
 * 8 KiB took the client to 0.84-0.89 but the service to 0.64-0.76 CPU-s/GB (a frame's header and send),
 * where 16 KiB measured 0.54-0.55 (256 KiB: 0.53-0.57).
 */
const STREAM_FRAME_BYTES = 16 * 1024;
/**
 * Retained reads up to this size are copied rather than kept in their reader slot: appended to the newest
 * chunk while it is such a copy with room in its buffer of this size, so a stream of small messages keeps one
 * buffer and one chunk per 4 KiB, not per message (each lived long enough to be promoted to V8's old space).
 */
const SMALL_CHUNK = 4096;
/** Buffers per writev of a consumer's writes. */
const WRITE_CHUNKS = 64;
const READ_BUDGET = 1024 * 1024;
/** The native reader's pool (DESIGN.md section 1): slots of READ_CHUNK for reads and writes in flight... */
const READER_SLOTS = 16;
/** ...plus enough to hold the retention window without copying it (up to this many). */
const RETAIN_SLOTS_MAX = 64;
/** Slots for chunks of short reads in the window (measured: ~7% of chunks under a full-speed peer). */
const RETAIN_SLOTS_SPARE = 6;

/** Slots retention may hold for a window of `retainBytes`: one per READ_CHUNK, and some for partly filled ones. */
const retainSlots = (retainBytes: number) =>
  retainBytes === 0 ? 0 : Math.min(RETAIN_SLOTS_MAX, Math.ceil(retainBytes / READ_CHUNK) + RETAIN_SLOTS_SPARE);

/**
 * A reader slot shared by the write that sends its bytes and by retention: it goes back to the reader when
 * both are done with it. Created held once (for the write).
 */
class SlotRef {
  private refs = 1;
  constructor(
    private readonly reader: StreamReader,
    private readonly slot: number,
  ) {}

  hold(): void {
    this.refs++;
  }

  drop(): void {
    if (--this.refs === 0) this.reader.release(this.slot);
  }
}

interface Chunk {
  offset: number;
  /** The chunk's bytes are data[0, length). */
  data: Buffer;
  length: number;
  /** A copy of short reads, with room after them in `data` (SMALL_CHUNK bytes): more may join it. */
  joinable: boolean;
  /** When its last bytes came. */
  at: number;
  /** Set while `data` is a view of a reader slot (held); unset once it is an owned copy. */
  slot?: SlotRef | undefined;
}

/** Retained bytes per user, across their sockets. */
const heldByUser = new Map<string, number>();

/**
 * Delivered bytes kept for resume, per socket, across consumers. No copy in the common case: a chunk the
 * native reader read stays in its slot, held (the pool has room for the window, see retainSlots); only
 * when retention holds more slots than that (many small chunks) are the oldest copied out and their slots
 * given back. A stopped reader never writes its pool again, so its slots held here stay valid after it.
 */
class Retained {
  constructor(
    private readonly owner: string,
    /** A stream socket's (bytes) rather than a datagram or seqpacket socket's (messages, one chunk each). */
    private readonly stream: boolean,
  ) {}

  private chunks: Chunk[] = [];
  private head = 0;
  private bytes = 0;
  /** The retained chunks that still hold a reader slot, oldest first (at most maxSlots + 1 of them). */
  private slotted: Chunk[] = [];

  add(offset: number, data: Buffer, limitBytes: number, userLimit: number, limitMs: number, slot?: SlotRef, maxSlots = 0): void {
    if (limitBytes === 0) return;
    // the window must be contiguous: bytes read without a consumer (REST recv) were never retained, so what
    // came before them can no longer be resumed without a silent hole
    let last = this.head < this.chunks.length ? this.chunks.at(-1) : undefined;
    if (last && last.offset + last.length !== offset) {
      while (this.head < this.chunks.length) this.dropOldest();
      last = undefined;
    }
    const now = Date.now();
    const length = data.length;
    // on a stream (no message boundaries to keep) a short read is copied, joining the copy of the ones before it
    const short = this.stream && length <= SMALL_CHUNK;
    if (short && last?.joinable && last.length + length <= SMALL_CHUNK) {
      data.copy(last.data, last.length);
      last.length += length;
      last.at = now;
    } else if (short) {
      // a short read would pin a whole slot for a few bytes: copy it at once (cheap, and the pool stays free)
      const copy = Buffer.allocUnsafeSlow(SMALL_CHUNK);
      data.copy(copy);
      this.chunks.push({ offset, data: copy, length, joinable: true, at: now, slot: undefined });
    } else {
      slot?.hold();
      const chunk: Chunk = { offset, data, length, joinable: false, at: now, slot };
      this.chunks.push(chunk);
      if (slot) this.slotted.push(chunk);
    }
    this.bytes += length;
    count(heldByUser, this.owner, length);
    const oldest = now - limitMs;
    while (this.head < this.chunks.length && (this.bytes > limitBytes || this.chunks[this.head]!.at < oldest)) this.dropOldest();
    // the owner's bound across all their streams: this stream gives up its oldest bytes first
    while (this.head < this.chunks.length && (heldByUser.get(this.owner) ?? 0) > userLimit) this.dropOldest();
    // too many slots held (short reads, small chunks): some become copies so that the reader keeps enough
    // free; the small ones first (the cheapest copies), then the oldest
    if (this.slotted.length > maxSlots) {
      for (const small of [true, false]) {
        for (let i = 0; this.slotted.length > maxSlots && i < this.slotted.length; ) {
          const c = this.slotted[i]!;
          if (small && c.length > READ_CHUNK / 4) {
            i++;
            continue;
          }
          c.data = Buffer.from(c.data);
          this.release(c); // removes it from `slotted`
        }
      }
    }
    if (this.head > 1024 && this.head * 2 > this.chunks.length) {
      this.chunks = this.chunks.slice(this.head);
      this.head = 0;
    }
  }

  /** The earliest offset still held (or `end` when nothing is). */
  start(end: number): number {
    return this.chunks[this.head]?.offset ?? end;
  }

  /** Lets everything go (the socket closed: no resume can follow), and with it the reader pools held. */
  clear(): void {
    while (this.head < this.chunks.length) this.dropOldest();
    this.chunks = [];
    this.head = 0;
  }

  /** Chunks from `offset` on, the first one sliced; copies of those still in reader slots (reused later). */
  from(offset: number): { offset: number; data: Buffer }[] {
    const out: { offset: number; data: Buffer }[] = [];
    for (let i = this.head; i < this.chunks.length; i++) {
      const c = this.chunks[i]!;
      if (c.offset + c.length <= offset) continue;
      const skip = Math.max(0, offset - c.offset);
      const data = c.data.subarray(skip, c.length);
      out.push({ offset: c.offset + skip, data: c.slot ? Buffer.from(data) : data });
    }
    return out;
  }

  private dropOldest(): void {
    const c = this.chunks[this.head++]!;
    this.bytes -= c.length;
    count(heldByUser, this.owner, -c.length);
    this.release(c);
  }

  private release(c: Chunk): void {
    if (!c.slot) return;
    const slot = c.slot;
    c.slot = undefined;
    this.slotted.splice(this.slotted.indexOf(c), 1);
    slot.drop();
  }
}
const retention = new WeakMap<ManagedSocket, Retained>();

/**
 * The socket's consumer (DESIGN.md section 5): reads the socket only while the transport keeps up, so
 * TCP flow control reaches the peer; forwards the socket's events in order; writes what the client sends,
 * in order, pausing the client while the socket's send buffer is full; keeps delivered bytes for resume.
 *
 *   client ──ws──▶ write queue ──send(2)──▶ socket ──recv(2)──▶ data events ──ws──▶ client
 *                (pause ws when full)        (read only while ws.bufferedAmount < high water)
 */
export class Consumer {
  /** Ends the consumer's waits (readiness, drain) when the client goes. */
  private readonly abort = new AbortController();
  /**
   * The same as `abort.signal.aborted`, as a plain field for the per-read checks: through the signal's
   * getter, onRead was deoptimized (wrong map) on a read of each new stream (--trace-deopt, bench latency
   * rounds); with the field it is not. No change in latency that the bench can resolve.
   */
  private detached = false;
  private unsubscribe: (() => void) | undefined;
  private drained: (() => void) | undefined;
  private ops: Promise<void> = Promise.resolve();
  private queuedBytes = 0;
  /** The batch new stream writes join, until a shutdown/close op or the batch's send finishes. */
  private batch: Buffer[] | undefined;
  private readonly retained: Retained;
  /** The native reader (stream sockets). */
  private reader: StreamReader | undefined;
  /**
   * The reader slot of the chunk being accounted (see onRead, forward). In binary mode that chunk is already
   * on its way to the client: onRead writes a read's frames before it accounts them.
   */
  private currentSlot: SlotRef | undefined;

  constructor(
    private readonly socket: ManagedSocket,
    private readonly events: EventLog,
    private readonly sink: ConsumerSink,
    private readonly opts: ConsumerOptions,
  ) {
    let r = retention.get(socket);
    if (!r) {
      const created = new Retained(socket.owner, socket.type === 'SOCK_STREAM');
      retention.set(socket, (r = created));
      socket.onClose(() => created.clear()); // no resume after close: the bytes and the user's share go
    }
    this.retained = r;
  }

  /** Takes the socket's reading side (409 if another consumer has it), replays from `offset`, goes live. */
  attach(): void {
    if (!this.socket.isOpen) throw errors.closed(this.socket.id, 'stream');
    if (this.socket.consumer) throw errors.streamAttached(this.socket.id);
    this.socket.consumer = this;
    this.replay();
    this.unsubscribe = this.events.subscribeSocket(this.socket.id, (event, payload) => this.forward(event, payload));
    if (this.socket.state === 'listening') {
      if (this.opts.autoAccept) void this.acceptLoop();
    } else if (this.socket.type === 'SOCK_STREAM') {
      void this.startReader();
    } else {
      void this.readLoop(); // datagrams and seqpacket: one message per read, with its sender
    }
  }

  /** The native reader's counters while it reads (diagnostics and tests). */
  readerStats(): PollerStats | undefined {
    return this.reader?.stats();
  }

  /** The client went away: stop reading; bytes it already sent still go out. */
  detach(): void {
    if (this.socket.consumer === this) this.socket.consumer = null;
    this.detached = true;
    this.abort.abort();
    this.unsubscribe?.();
    this.reader?.stop();
    this.drained?.();
  }

  /** The transport wrote some of what it held: reading may go on. */
  resume(): void {
    if (this.drained && this.sink.buffered() < this.opts.highWaterBytes / 2) {
      const go = this.drained;
      this.drained = undefined;
      go();
    }
  }

  /**
   * Bytes from the client, sent in order after everything before them. On a stream, the messages that
   * arrive in one turn of the event loop (one read of the WebSocket can carry many) go out together when
   * the turn's I/O is done, as one sendmsg over all of them (writev, up to WRITE_CHUNKS buffers a call);
   * what the send buffer does not take waits for room, and later writes join it until it is empty. A
   * shutdown or close op ends the batch, so later writes queue after it, as in C. Sending each message at
   * once took a syscall and a wake-up of the peer per 64 KiB: bench scenario 2 measured 1.36 CPU-s/GB and
   * 0.73 GB/s that way, 1.02 and 0.94 like this (same-run A/B; the relay: 1.27 and 0.79).
   */
  write(data: Buffer): void {
    this.queuedBytes += data.length;
    if (this.queuedBytes > this.opts.writeQueueBytes) this.sink.pauseInput();
    if (this.socket.type !== 'SOCK_STREAM') {
      // one client message is one datagram / record
      this.enqueue('send', async () => {
        try {
          await this.socket.send(data, { untilDone: true });
        } finally {
          this.wrote(data.length);
        }
      });
      return;
    }
    if (!this.batch) {
      const batch: Buffer[] = [];
      this.batch = batch;
      this.enqueue('send', async () => {
        await yieldToLoop(); // the rest of this turn's messages join the batch
        await this.pump(batch);
      });
    }
    this.batch.push(data);
  }

  private wrote(bytes: number): void {
    this.queuedBytes -= bytes;
    if (this.queuedBytes <= this.opts.writeQueueBytes / 2) this.sink.resumeInput();
  }

  /** Sends the batch until it is empty (it may grow meanwhile), waiting for room, yielding now and then. */
  private async pump(batch: Buffer[]): Promise<void> {
    let calls = 0;
    try {
      while (batch.length > 0) {
        const chunks = batch.length > WRITE_CHUNKS ? batch.slice(0, WRITE_CHUNKS) : batch;
        let want = 0;
        for (const c of chunks) want += c.length;
        let n: number;
        try {
          n = this.socket.writeChunks(chunks);
        } catch (e) {
          if (!(e instanceof SockctlError) || e.code !== 'EAGAIN') throw e;
          n = 0;
        }
        this.wrote(n);
        // a short write means a full send buffer: wait for room rather than meet EAGAIN (an exception) next
        const full = n < want;
        while (n > 0) {
          const head = batch[0]!;
          if (n >= head.length) {
            n -= head.length;
            batch.shift();
          } else {
            batch[0] = head.subarray(n);
            n = 0;
          }
        }
        if (full) {
          if ((await this.socket.whenReady('writable')) !== 'ready') throw errors.closed(this.socket.id, 'sendmsg');
        } else if (++calls % 16 === 0) await yieldToLoop(); // a fast client must not starve timers and requests
      }
    } catch (e) {
      this.wrote(batch.reduce((sum, b) => sum + b.length, 0));
      batch.length = 0;
      throw e;
    } finally {
      if (this.batch === batch) this.batch = undefined;
    }
  }

  shutdown(how: 'SHUT_RD' | 'SHUT_WR' | 'SHUT_RDWR'): void {
    this.batch = undefined;
    this.enqueue('shutdown', async () => this.socket.shutdown(how));
  }

  /**
   * Closes the socket after every queued write, without losing the tail: shutdown(SHUT_WR) sends FIN after
   * the data, and the close waits (bounded) until the peer acknowledged it all, since closing with unread
   * input makes the kernel send RST and drop what is still in the send queue.
   */
  close(): void {
    this.batch = undefined;
    this.enqueue('close', async () => {
      if (!this.socket.isOpen) return;
      if (this.socket.type === 'SOCK_STREAM' && this.socket.state === 'connected') {
        try {
          if (!this.socket.shutdownFlags.write) this.socket.shutdown('SHUT_WR');
          const end = Date.now() + this.opts.closeFlushMs;
          while (this.socket.isOpen && native.ioctlInt(this.socket.fd, C.SIOCOUTQ) > 0 && Date.now() < end)
            await new Promise((r) => setTimeout(r, 5));
        } catch {
          // the peer is gone: close anyway
        }
      }
      if (this.socket.isOpen) this.socket.close('closed by its consumer stream');
    });
  }

  /** Client operations (sends, shutdown, close), run in order; a failure is an error event naming the op. */
  private enqueue(op: string, run: () => Promise<void>): void {
    this.ops = this.ops.then(run).catch((e: unknown) => {
      const err = e instanceof SockctlError ? e : errors.badRequest(String(e));
      if (!this.detached) this.sink.text(JSON.stringify({ type: 'error', socket: this.socket.id, op, ...err.toJSON() }));
    });
  }

  private replay(): void {
    const want = this.opts.offset;
    const end = this.socket.stats.bytesReceived;
    if (want === undefined || want >= end) {
      if (want !== undefined && want > end)
        this.sink.text(this.errorEvent('SOCKCTL_BAD_OFFSET', `offset ${want} is past the ${end} bytes received so far`));
      return;
    }
    const start = this.retained.start(end);
    if (want < start)
      this.sink.text(
        this.errorEvent('SOCKCTL_OFFSET_EXPIRED', `bytes ${want}..${start} are no longer retained; resuming at ${start}`, start),
      );
    for (const c of this.retained.from(Math.max(want, start))) this.deliver(c.offset, c.data, undefined);
  }

  private forward(event: SockEvent, payload: Buffer | undefined): void {
    if (event.type === 'data' && payload) {
      const slot = this.currentSlot;
      this.currentSlot = undefined;
      this.retained.add(
        event.offset as number,
        payload,
        this.opts.retainBytes,
        this.opts.userRetainBytes,
        this.opts.retainMs,
        slot,
        retainSlots(this.opts.retainBytes),
      );
      if (slot && this.opts.binary) return; // a reader's chunk in binary mode went out already (onRead)
      this.deliver(event.offset as number, payload, event, slot && (() => slot.drop()));
      return;
    }
    if (event.type === 'sent') return; // the client knows what it sent
    this.sink.text(JSON.stringify(event));
    if (event.type === 'closed') {
      this.retained.clear();
      this.detach();
      this.sink.end(1000, 'socket closed');
    }
  }

  /**
   * Binary frames of `data`: one for a datagram or seqpacket message; on a stream socket, frames of at most
   * STREAM_FRAME_BYTES (views of `data`) in one write, framed as the native reader frames them.
   */
  private sendBinary(data: Buffer, done?: () => void): void {
    if (this.socket.type !== 'SOCK_STREAM') return this.sink.binary(data, done);
    this.sink.raw(framesAfter([data], 0, STREAM_FRAME_BYTES), done);
  }

  /** `done` (a reader slot's release) runs once `data` is no longer needed: after the write, or now for text. */
  private deliver(offset: number, data: Buffer, event: SockEvent | undefined, done?: () => void): void {
    if (this.opts.binary) return this.sendBinary(data, done);
    const base = event ?? { seq: null, ts: isoNow(), socket: this.socket.id, type: 'data', replay: true };
    const text = data.toString(this.opts.encoding); // a copy: the slot is free again
    done?.();
    this.sink.text(JSON.stringify({ ...base, offset, bytes: data.length, data: text, encoding: this.opts.encoding }));
  }

  /**
   * Stream sockets: the native reader (DESIGN.md section 1) reads into a fixed pool while the socket is
   * readable, the WebSocket keeps up and a slot is free; each readable event is one onRead. It starts at the
   * socket's first readable event (data, EOF or an error): its pool is about 13 MiB of ArrayBuffer, which V8
   * counts as external memory, and a stream that only sends (WebSocket → TCP) never needs one. Held all the
   * same, it brought such a stream's peaks near V8's external-memory limit, past which the 64 KiB frame
   * buffers kept it in back-to-back mark-compacts (3 CPU-s/GB instead of 1.4).
   */
  private async startReader(): Promise<void> {
    if ((await this.socket.whenReady('readable', this.abort.signal)) !== 'ready') return;
    if (this.detached || !this.socket.isOpen) return;
    try {
      this.reader = this.socket.startReader(
        { slots: READER_SLOTS + retainSlots(this.opts.retainBytes), slotBytes: READ_CHUNK, budgetBytes: READ_BUDGET },
        (slots, lengths, eof, error, written) => this.onRead(slots, lengths, eof, error, written),
      );
      const direct = this.opts.binary ? this.sink.direct?.() : undefined;
      if (direct) this.reader.direct(direct.fd, direct.gate, STREAM_FRAME_BYTES);
    } catch (e) {
      if (!(e instanceof SockctlError)) throw e; // closed meanwhile
    }
  }

  /**
   * One readable event's chunks: each is sent as it is, the frames in one corked write, and accounted (one
   * `data` event: observers copy the slot's bytes while they run, retention holds the slot); a slot goes
   * back to the reader once its send completed (the completion callback, not the return of send) and
   * retention let it go. Then EOF or the error, in order after the data, as pull() reports them.
   * In binary mode the frames are written before the chunks are accounted (a binary frame does not carry
   * the event): the event and retention took 4.4-7 µs between the read and the write (timestamps in the
   * service, median of ~1,600 messages a round, bench scenario 3), time the relay does not spend before its
   * write. In direct mode the addon wrote them already, before this callback, up to `written` bytes of
   * frames; the rest goes first. The frames are made here as the addon makes them, in one write (not a
   * ws.send per frame: one header and payload pair each is all it takes; 0.50 and 0.53 CPU-s/GB against 0.57
   * and 0.62 in bench scenario 1). Text mode sends the event itself, so it is accounted first.
   */
  private onRead(slots: number[], lengths: number[], eof: boolean, error: Error | null, written: number): void {
    const reader = this.reader!;
    const refs = slots.map((slot) => new SlotRef(reader, slot));
    const views = slots.map((slot, i) => reader.view(slot, lengths[i]!));
    // the bytes go out in a write that holds each slot's first reference (those the addon wrote in part too)
    const out = written > 0 || (this.opts.binary && !this.detached && this.socket.isOpen);
    // The write's references go once it is done, never before the read is accounted: retention takes its own
    // reference then, and a slot given back before that would be given back twice. A write that is over at
    // once (the addon wrote it all, or the transport is closing) leaves them to the end of this call.
    let accounting = true;
    let dropAfter = false;
    if (out) {
      // the frames the addon did not write (all of them unless in direct mode with its gate open), in one write
      const rest = framesAfter(views, written, STREAM_FRAME_BYTES);
      if (rest.length === 0) dropAfter = true;
      else
        this.sink.raw(rest, () => {
          if (accounting) dropAfter = true;
          else for (const ref of refs) ref.drop();
        });
    }
    this.sink.cork();
    try {
      for (let i = 0; i < refs.length; i++) {
        const ref = refs[i]!;
        if (this.detached || !this.socket.isOpen) {
          if (!out) ref.drop();
          continue;
        }
        this.currentSlot = ref;
        this.socket.accountRead(views[i]!, false);
        if (this.currentSlot) {
          // nobody took it (not subscribed): the event is out; unless the bytes went out, they are not needed
          this.currentSlot = undefined;
          if (!out) ref.drop();
        }
      }
      if (this.detached || !this.socket.isOpen) return;
      if (error) {
        // ECONNRESET and friends become an error event (and lastError); the next read sees EOF
        if (this.socket.readFailed(error).statusCode !== 502) reader.stop();
        else if (!this.drained) reader.resume(); // else once the WebSocket drained
      }
      if (eof) {
        this.socket.accountRead(Buffer.alloc(0), true);
        reader.stop();
      }
    } finally {
      this.sink.uncork();
      accounting = false;
      if (dropAfter) for (const ref of refs) ref.drop();
    }
    if (reader.active && this.sink.buffered() >= this.opts.highWaterBytes && !this.drained) {
      reader.pause();
      this.drained = () => reader.resume();
    }
  }

  private async readLoop(): Promise<void> {
    const signal = this.abort.signal;
    while (!this.detached && this.socket.isOpen) {
      if (this.sink.buffered() >= this.opts.highWaterBytes) {
        await new Promise<void>((resolve) => (this.drained = resolve));
        continue;
      }
      let outcome: 'more' | 'blocked' | 'eof';
      try {
        outcome = this.socket.pull(READ_CHUNK, READ_BUDGET);
      } catch (e) {
        // ECONNRESET and friends were reported as an error event; the next read sees EOF
        if (e instanceof SockctlError && e.statusCode === 502) continue;
        return;
      }
      if (outcome === 'eof') return;
      if (outcome === 'more') await yieldToLoop();
      else if ((await this.socket.whenReady('readable', signal)) !== 'ready') return;
    }
  }

  private async acceptLoop(): Promise<void> {
    const signal = this.abort.signal;
    while (!this.detached && this.socket.isOpen) {
      try {
        await this.socket.accept(0);
        continue;
      } catch (e) {
        if (!(e instanceof SockctlError) || e.code !== 'EAGAIN') {
          if (e instanceof SockctlError && e.statusCode === 503) {
            this.sink.text(this.errorEvent(e.code, e.message));
            await new Promise((r) => setTimeout(r, 1000)); // at the ceiling: leave them queued, try later
            continue;
          }
        }
      }
      if ((await this.socket.whenReady('readable', signal)) !== 'ready') return;
    }
  }

  private errorEvent(code: string, message: string, offset?: number): string {
    return JSON.stringify({ seq: null, ts: isoNow(), socket: this.socket.id, type: 'error', code, message, ...(offset === undefined ? {} : { offset }) });
  }
}

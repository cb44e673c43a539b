// The consumer stream's native reader (DESIGN.md section 1) seen from outside: what it reads is accounted
// as before (stats, one `data` event per chunk with its offset, copies of the bytes for observers that
// asked), slots reused under load never corrupt what anyone got, and a consumer that stops taking data
// leaves the service idle (no poll left armed) with the surplus waiting in the kernel.
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { C, native } from '../src/io/native.js';
import { FdWatcher } from '../src/io/watcher.js';
import { startApp, TOKEN, until, type TestApp } from './helpers.js';

const MiB = 1024 * 1024;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let t: TestApp | undefined;
let port = 0;
const closers: (() => void)[] = [];

afterEach(async () => {
  for (const c of closers.splice(0)) c();
  await t?.close();
  t = undefined;
});

async function boot(overrides: Parameters<typeof startApp>[0] = {}): Promise<TestApp> {
  t = await startApp(overrides);
  await t.app.listen({ host: '127.0.0.1', port: 0 });
  port = (t.app.server.address() as net.AddressInfo).port;
  return t;
}

function ws(path: string): WebSocket {
  const w = new WebSocket(`ws://127.0.0.1:${port}${path}${path.includes('?') ? '&' : '?'}token=${TOKEN}`, { maxPayload: 64 * MiB });
  w.on('error', () => undefined);
  closers.push(() => w.terminate());
  return w;
}

/** The events of socket `id` as a ?data=true observer (base64) gets them, from the moment it is subscribed. */
async function observeWithData(id: string): Promise<any[]> {
  const observer = ws(`/v1/events?socket=${id}&data=true&encoding=base64`);
  const events: any[] = [];
  observer.on('message', (d) => events.push(JSON.parse(d.toString())));
  await once(observer, 'open');
  await until(() => t!.app.events.subscribers >= 1, 'observer subscribed');
  return events;
}

/** The bytes of an observer's data/sent events (base64), checked contiguous from offset 0 and as long as they say. */
function joinCopies(events: any[]): Buffer {
  let offset = 0;
  const copies: Buffer[] = [];
  for (const e of events) {
    expect(e.offset).toBe(offset);
    const b = Buffer.from(e.data, 'base64');
    expect(b.length).toBe(e.bytes);
    copies.push(b);
    offset += b.length;
  }
  return Buffer.concat(copies);
}

/** A connected TCP socket in the service (`id`) and its net peer. */
async function session(): Promise<{ id: string; peer: net.Socket }> {
  const c = await t!.call('POST', '/v1/sockets', { family: 'inet', type: 'stream' });
  await t!.call('POST', `/v1/sockets/${c.body.id}/bind`, { address: '127.0.0.1', port: 0 });
  const l = await t!.call('POST', `/v1/sockets/${c.body.id}/listen`, {});
  const peer = net.connect({ port: l.body.local.port, host: '127.0.0.1', allowHalfOpen: true });
  peer.on('error', () => undefined);
  closers.push(() => peer.destroy());
  await once(peer, 'connect');
  const a = await t!.call('POST', `/v1/sockets/${c.body.id}/accept`, { timeoutMs: 2000 });
  expect(a.status).toBe(201);
  await t!.call('DELETE', `/v1/sockets/${c.body.id}`);
  return { id: a.body.id, peer };
}

/**
 * A binary consumer stream on a fresh session that writes to its peer, a ?data=true observer of the socket,
 * and what the peer receives.
 */
async function writingConsumer(): Promise<{ id: string; peer: net.Socket; events: any[]; received: Buffer[]; consumer: WebSocket }> {
  await boot({ observerQueue: 100_000 });
  const { id, peer } = await session();
  const events = await observeWithData(id);
  const received: Buffer[] = [];
  peer.on('data', (d: Buffer) => received.push(d));
  const consumer = ws(`/v1/sockets/${id}/stream?binary=true`);
  await once(consumer, 'open');
  return { id, peer, events, received, consumer };
}

describe('native reader: accounting and observers', () => {
  it('binary consumer + ?data=true observer: offsets contiguous, observer copies and frames equal what was sent', async () => {
    await boot({ observerQueue: 100_000 });
    const { id, peer } = await session();
    const events = await observeWithData(id);

    const consumer = ws(`/v1/sockets/${id}/stream?binary=true`);
    const frames: Buffer[] = [];
    const texts: any[] = [];
    consumer.on('message', (d: Buffer, bin) => (bin ? frames.push(d) : texts.push(JSON.parse(d.toString()))));
    await once(consumer, 'open');
    // many small writes and a few large ones: slots are filled, sent and reused many times over
    const parts = [randomBytes(3 * MiB + 17), ...Array.from({ length: 200 }, (_, i) => randomBytes(1 + ((i * 7919) % 5000))), randomBytes(2 * MiB)];
    const sent = Buffer.concat(parts);
    for (const p of parts) peer.write(p);
    peer.end();
    await until(() => texts.some((e) => e.type === 'eof'), 'eof on the consumer', 10_000);
    await until(() => events.some((e) => e.type === 'eof'), 'eof on the observer', 10_000);

    const got = Buffer.concat(frames);
    expect(got.length).toBe(sent.length);
    expect(sha256(got)).toBe(sha256(sent));
    expect(texts.find((e) => e.type === 'eof')).toMatchObject({ offset: sent.length });

    const data = events.filter((e) => e.type === 'data');
    expect(events.filter((e) => e.type === 'gap')).toEqual([]);
    for (const e of data) {
      expect(e.bytes).toBeGreaterThan(0);
      expect(e.bytes).toBeLessThanOrEqual(256 * 1024); // one slot per chunk
    }
    expect(sha256(joinCopies(data))).toBe(sha256(sent));
    // each data event's chunk goes out as binary frames of at most 16 KiB, in the same order: the frames,
    // taken in turn, add up to each event's bytes exactly (a frame never spans two chunks)
    expect(Math.max(...frames.map((f) => f.length))).toBe(16 * 1024);
    let next = 0;
    for (const e of data) {
      let bytes = 0;
      while (bytes < e.bytes) bytes += frames[next++]!.length;
      expect(bytes).toBe(e.bytes);
    }
    expect(next).toBe(frames.length);
    const s = (await t!.call('GET', `/v1/sockets/${id}`)).body;
    expect(s.stats).toMatchObject({ bytesReceived: sent.length, messagesReceived: data.length });
  });

  it('consumer writes: one sent event per sendmsg, contiguous, and a ?data=true observer gets exactly the bytes', async () => {
    const { id, peer, events, received, consumer } = await writingConsumer();
    peer.pause(); // the send buffer fills: writes queue up and go out in batches of many frames
    const frames = Array.from({ length: 300 }, (_, i) => randomBytes(16 * 1024 + ((i * 7919) % 50_000)));
    const sent = Buffer.concat(frames);
    for (const f of frames) consumer.send(f);
    await new Promise((r) => setTimeout(r, 200));
    peer.resume();
    await until(() => received.reduce((n, b) => n + b.length, 0) >= sent.length, 'the peer to get everything', 10_000);
    expect(sha256(Buffer.concat(received))).toBe(sha256(sent));
    await until(() => events.filter((e) => e.type === 'sent').reduce((n, e) => n + e.bytes, 0) >= sent.length, 'the sent events', 10_000);
    const sentEvents = events.filter((e) => e.type === 'sent');
    expect(sha256(joinCopies(sentEvents))).toBe(sha256(sent));
    // batches formed while the peer did not read: some sendmsg took more than one frame
    expect(sentEvents.length).toBeLessThan(frames.length);
    const s = (await t!.call('GET', `/v1/sockets/${id}`)).body;
    expect(s.stats).toMatchObject({ bytesSent: sent.length, messagesSent: sentEvents.length });
  });

  it('consumer writes: the messages of one WebSocket read go out in one sendmsg, in order', async () => {
    const { events, received, consumer } = await writingConsumer();
    const frames = Array.from({ length: 20 }, () => randomBytes(1000));
    const sent = Buffer.concat(frames);
    // one TCP write carrying 20 frames: the service reads them at once (one loopback segment)
    const transport = (consumer as unknown as { _socket: import('node:net').Socket })._socket;
    transport.cork();
    for (const f of frames) consumer.send(f);
    transport.uncork();
    await until(() => received.reduce((n, b) => n + b.length, 0) >= sent.length, 'the peer to get everything');
    expect(Buffer.concat(received).equals(sent)).toBe(true);
    await until(() => events.some((e) => e.type === 'sent'), 'the sent event');
    const sentEvents = events.filter((e) => e.type === 'sent');
    expect(sentEvents.map((e) => [e.offset, e.bytes])).toEqual([[0, sent.length]]);
    expect(joinCopies(sentEvents).equals(sent)).toBe(true);
  });

  it('a JSON consumer gets data events with offsets, and a resume replays the retained copies intact', async () => {
    await boot();
    const { id, peer } = await session();
    const c1 = ws(`/v1/sockets/${id}/stream?encoding=base64`);
    const ev1: any[] = [];
    c1.on('message', (d) => ev1.push(JSON.parse(d.toString())));
    await once(c1, 'open');
    const first = randomBytes(3 * MiB);
    peer.write(first);
    await until(() => ev1.filter((e) => e.type === 'data').reduce((n, e) => n + e.bytes, 0) === first.length, 'first part', 10_000);
    let off = 0;
    for (const e of ev1.filter((x) => x.type === 'data')) {
      expect(e.offset).toBe(off);
      off += e.bytes;
    }
    c1.close();
    await until(() => t!.app.registry.find(id)?.consumer === null, 'detached');
    // more data arrives while nobody reads: the slots the first reader used are long reused; the replay
    // must come from retention's own copy
    const second = randomBytes(MiB);
    peer.write(second);
    const c2 = ws(`/v1/sockets/${id}/stream?binary=true&offset=${MiB}`);
    const frames: Buffer[] = [];
    c2.on('message', (d: Buffer, bin) => bin && frames.push(d));
    await once(c2, 'open');
    peer.end();
    const want = Buffer.concat([first.subarray(MiB), second]);
    await until(() => frames.reduce((n, f) => n + f.length, 0) >= want.length, 'replay and the rest', 10_000);
    expect(sha256(Buffer.concat(frames))).toBe(sha256(want));
  });
});

describe('native reader: a consumer that stops reading', () => {
  it('the reader pauses, the surplus waits in the kernel, and the service stays idle (no armed poll)', async () => {
    await boot({ streamHighWaterBytes: MiB });
    const { id, peer } = await session();
    const consumer = ws(`/v1/sockets/${id}/stream?binary=true`);
    let received = 0;
    consumer.on('message', (d: Buffer, bin) => bin && (received += d.length));
    await once(consumer, 'open');
    consumer.pause(); // its TCP socket stops reading: the service's WebSocket buffer fills
    const total = 48 * MiB;
    const block = randomBytes(MiB);
    let written = 0;
    const writer = (async () => {
      while (written < total && !peer.destroyed) {
        written += block.length;
        if (!peer.write(block)) await once(peer, 'drain');
      }
    })();
    // settles: the peer's writes block once the kernel buffers on the way are full
    let last = -1;
    await until(async () => {
      const s = (await t!.call('GET', `/v1/sockets/${id}`)).body;
      const settled = s.stats.bytesReceived === last && s.stats.bytesReceived > 0;
      last = s.stats.bytesReceived;
      await new Promise((r) => setTimeout(r, 100));
      return settled;
    }, 'reading stopped', 10_000);
    const s = (await t!.call('GET', `/v1/sockets/${id}`)).body;
    expect(s.kernel.recvQueue).toBeGreaterThan(256 * 1024); // the surplus is in the kernel...
    expect(written).toBeLessThan(total); // ...and the peer is held back
    const server = [...t!.app.websocketServer.clients][0]!;
    expect(server.bufferedAmount).toBeLessThanOrEqual(MiB + MiB + 256 * 1024); // high water + one read budget
    // idle: a poll left armed on the readable fd would keep the loop (and a core) busy
    const cpu0 = process.cpuUsage();
    const t0 = Date.now();
    await new Promise((r) => setTimeout(r, 400));
    const used = process.cpuUsage(cpu0);
    const ms = (used.user + used.system) / 1000;
    console.log(`[reader idle] ${ms.toFixed(1)} ms CPU in ${Date.now() - t0} ms while paused; recvQueue ${s.kernel.recvQueue}`);
    expect(ms).toBeLessThan(150);
    // the consumer takes data again: everything arrives, then EOF
    consumer.resume();
    await writer;
    peer.end();
    await until(() => received === written, 'all bytes', 20_000);
    expect((await t!.call('GET', `/v1/sockets/${id}`)).body.stats.bytesReceived).toBe(written);
  });
});

describe('native reader: the pool after stop', () => {
  // A stopped reader's pool (tens of MiB) is unmapped once every slot is back, rather than waiting, old,
  // for a full mark-compact; a slot still lent keeps it (and its bytes) intact, through any GC.
  it('is unmapped once the last lent slot is released, not before', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as (opts?: { type: 'minor' | 'major' }) => void;
    const [a, b] = native.socketpair(C.AF_UNIX, C.SOCK_STREAM, 0) as [number, number];
    const watcher = new FdWatcher(a);
    closers.push(() => {
      watcher.close();
      native.close(a);
      native.close(b);
    });
    const slotBytes = 256 * 1024;
    const poolBytes = 64 * slotBytes;
    const got: { slot: number; length: number }[] = [];
    const reader = watcher.read({ slots: 64, slotBytes, budgetBytes: 1024 * 1024 }, (slots, lengths) => {
      slots.forEach((slot, i) => got.push({ slot, length: lengths[i]! }));
    });
    const sent = randomBytes(1000);
    native.send(b, sent, 0, null);
    await until(() => got.length > 0, 'the reader to hand over a slot');
    const view = reader.view(got[0]!.slot, got[0]!.length);
    reader.stop();
    for (const extra of got.slice(1)) reader.release(extra.slot);
    // a slot still lent: the pool stays whole, through a scavenge and a mark-compact
    gc({ type: 'minor' });
    gc({ type: 'major' });
    expect(view.length).toBe(got[0]!.length);
    expect(view.equals(sent.subarray(0, view.length))).toBe(true);
    const held = native.readerPoolBytes();
    expect(held).toBeGreaterThanOrEqual(poolBytes);
    // the last slot back: the pool is detached (views read empty) and unmapped, with no GC
    reader.release(got[0]!.slot);
    expect(view.length).toBe(0);
    await until(() => held - native.readerPoolBytes() >= poolBytes, 'the pool to be unmapped');
    expect(() => native.detachPool({} as ArrayBuffer)).toThrow(TypeError);
  });
});

describe('native reader: direct mode (the addon writes the frames)', () => {
  it('a binary consumer\'s frames go out from the addon; a slow client, pings and events around them stay whole', async () => {
    await boot({ wsPingMs: 1000 });
    const { id, peer } = await session();
    const consumer = ws(`/v1/sockets/${id}/stream?binary=true`);
    const frames: Buffer[] = [];
    const texts: any[] = [];
    let pings = 0;
    consumer.on('ping', () => pings++);
    consumer.on('message', (d: Buffer, bin) => (bin ? frames.push(d) : texts.push(JSON.parse(d.toString()))));
    await once(consumer, 'open');
    const live = () => (t!.app.registry.find(id)?.consumer as { readerStats(): Record<string, number | boolean> | undefined } | null)?.readerStats();
    // small messages one at a time: each read is written by the addon whole, before JS runs
    const small = Array.from({ length: 20 }, (_, i) => randomBytes(1 + i * 1000));
    for (const m of small) {
      const before = frames.length;
      peer.write(m);
      await until(() => frames.length > before, 'a frame');
    }
    await until(() => live() !== undefined, 'the reader');
    expect(live()).toMatchObject({ direct: true, directWrites: 20, directPartial: 0 });
    // the service's end of the WebSocket gets a small send buffer and the client stops reading for a while:
    // the addon's writes stop inside frames, JS writes the rest (the gate shut meanwhile) while the peer
    // keeps the socket readable, then the addon again (16 KiB and the client's delayed ACKs: about 2.5 MB/s,
    // so 1 MiB)
    const server = [...t!.app.websocketServer.clients][0] as unknown as { _socket: { _handle: { fd: number } } };
    native.setsockoptInt(server._socket._handle.fd, C.SOL_SOCKET, C.SO_SNDBUF, 16 * 1024);
    const transport = (consumer as unknown as { _socket: net.Socket })._socket;
    transport.pause();
    setTimeout(() => transport.resume(), 150);
    const bulk = Array.from({ length: 32 }, (_, i) => randomBytes(32 * 1024 + i * 311));
    for (const m of bulk) {
      if (!peer.write(m)) await once(peer, 'drain');
    }
    let sent = Buffer.concat([...small, ...bulk]);
    await until(() => frames.reduce((n, f) => n + f.length, 0) >= sent.length, 'every byte', 10_000);
    const stats = live()!;
    expect(stats.directPartial).toBeGreaterThan(0);
    expect(stats.directWrites).toBeGreaterThan(20);
    // another read after a ping went out
    for (let i = 0; i < 1; i++) {
      const before = pings;
      await until(() => pings > before, 'a ping', 2000);
      peer.write(small[i]!);
      sent = Buffer.concat([sent, small[i]!]);
    }
    await until(() => frames.reduce((n, f) => n + f.length, 0) >= sent.length, 'the last bytes');
    peer.end();
    await until(() => texts.some((e) => e.type === 'eof'), 'eof', 5000);
    expect(sha256(Buffer.concat(frames))).toBe(sha256(sent));
    expect(Math.max(...frames.map((f) => f.length))).toBe(16 * 1024);
    expect(texts.find((e) => e.type === 'eof')).toMatchObject({ offset: sent.length });
    expect(consumer.readyState).toBe(WebSocket.OPEN); // every ping answered in time
  });

  it('reads that come while the WebSocket is closing give their slots back once, and a resume replays them', async () => {
    await boot();
    const { id, peer } = await session();
    const c1 = ws(`/v1/sockets/${id}/stream?binary=true`);
    const frames: Buffer[] = [];
    c1.on('message', (d: Buffer, bin) => bin && frames.push(d));
    await once(c1, 'open');
    const first = randomBytes(300 * 1024);
    peer.write(first);
    await until(() => frames.reduce((n, f) => n + f.length, 0) === first.length, 'the first part');
    // the client sends its close frame and stops reading: the service's WebSocket is closing (its close frame
    // sent, the connection half-closed) but not closed, so the consumer is still attached for a while
    const transport = (c1 as unknown as { _socket: net.Socket })._socket;
    c1.close(1000);
    transport.pause();
    const server = [...t!.app.websocketServer.clients][0]!;
    await until(() => server.readyState === WebSocket.CLOSING, 'closing');
    // the reader's pool: unmapped (detached) once the reader stopped and every slot came back, at the end
    const pool = (t!.app.registry.find(id)!.consumer as unknown as { reader: { pool: Buffer } }).reader.pool;
    // reads while closing: each goes nowhere, and retention keeps it (slots, not copies: reads over 4 KiB)
    const during = [randomBytes(100 * 1024), randomBytes(70 * 1024), randomBytes(200 * 1024)];
    for (const d of during) {
      const before = t!.app.registry.find(id)!.stats.bytesReceived;
      peer.write(d);
      await until(() => t!.app.registry.find(id)!.stats.bytesReceived === before + d.length, 'read while closing');
    }
    expect(t!.app.registry.find(id)?.consumer).not.toBeNull();
    transport.destroy(); // the consumer detaches and its reader stops: the pool must stay while retention holds it
    await until(() => t!.app.registry.find(id)?.consumer === null, 'detached');
    const c2 = ws(`/v1/sockets/${id}/stream?binary=true&offset=0`);
    const replay: Buffer[] = [];
    const texts: any[] = [];
    c2.on('message', (d: Buffer, bin) => (bin ? replay.push(d) : texts.push(JSON.parse(d.toString()))));
    await once(c2, 'open');
    const all = Buffer.concat([first, ...during]);
    await until(() => replay.reduce((n, f) => n + f.length, 0) >= all.length || texts.length > 0, 'the replay');
    expect(texts).toEqual([]);
    expect(sha256(Buffer.concat(replay))).toBe(sha256(all));
    // closing the socket clears retention: then every slot of the first reader is back, those the closing
    // WebSocket never wrote included, and its pool goes
    expect(pool.buffer.byteLength).toBeGreaterThan(0);
    await t!.call('DELETE', `/v1/sockets/${id}`);
    await until(() => pool.buffer.byteLength === 0, 'the first pool detached');
  });

  it('a resume\'s replay goes out before the first direct write of the reads that follow it', async () => {
    await boot();
    const { id, peer } = await session();
    const c1 = ws(`/v1/sockets/${id}/stream?binary=true`);
    let first = 0;
    c1.on('message', (d: Buffer) => (first += d.length));
    await once(c1, 'open');
    const old = randomBytes(8 * MiB - 1000);
    peer.write(old);
    await until(() => first === old.length, 'the first part', 10_000);
    c1.close(1000);
    await until(() => t!.app.registry.find(id)?.consumer === null, 'detached');
    // more bytes wait in the kernel when the resume comes: the replay (megabytes, queued in JS) and the new
    // reader start together, and the reader's first read must not pass the replay
    const fresh = randomBytes(200 * 1024);
    const before = t!.app.registry.find(id)!.stats.bytesReceived;
    peer.write(fresh);
    await new Promise((r) => setTimeout(r, 50));
    expect(t!.app.registry.find(id)!.stats.bytesReceived).toBe(before); // not read yet: nobody reads
    const c2 = ws(`/v1/sockets/${id}/stream?binary=true&offset=0`);
    const frames: Buffer[] = [];
    let failed: unknown;
    c2.on('message', (d: Buffer, bin) => bin && frames.push(d));
    c2.on('error', (e) => (failed = e));
    await once(c2, 'open');
    const all = Buffer.concat([old, fresh]);
    await until(() => failed !== undefined || frames.reduce((n, f) => n + f.length, 0) >= all.length, 'every byte', 10_000);
    expect(failed).toBeUndefined();
    expect(sha256(Buffer.concat(frames))).toBe(sha256(all));
  });

  it('a text consumer is not in direct mode', async () => {
    await boot();
    const { id, peer } = await session();
    const consumer = ws(`/v1/sockets/${id}/stream`);
    const events: any[] = [];
    consumer.on('message', (d) => events.push(JSON.parse(d.toString())));
    await once(consumer, 'open');
    peer.write('hello');
    await until(() => events.some((e) => e.type === 'data'), 'data');
    expect(events.find((e) => e.type === 'data')).toMatchObject({ data: 'hello', bytes: 5 });
    const stats = (t!.app.registry.find(id)?.consumer as { readerStats(): Record<string, number | boolean> | undefined }).readerStats();
    expect(stats).toMatchObject({ direct: false, directWrites: 0 });
  });
});

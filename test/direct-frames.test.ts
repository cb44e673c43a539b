// The native reader's direct mode (native/index.d.ts setDirect): a read's bytes leave as WebSocket binary
// frames written by the addon itself, while JS's gate is open; what a write left undone, JS completes from
// the same layout (src/io/ws-frames.ts). Real Unix socket pairs: one is read, one is the WebSocket's
// connection, whose far end the test reads and parses as a WebSocket client would.
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { createRequire } from 'node:module';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import type { Native, Poller } from '../native/index.js';
import { directGate } from '../src/plugins/websocket.js';
import { frameHeader, framesAfter } from '../src/io/ws-frames.js';

const N = createRequire(import.meta.url)('../build/Release/sockctl.node') as Native;
const C = N.constants;
const FRAME = 16 * 1024;

const fds = new Set<number>();
const pollers = new Set<Poller>();
afterEach(() => {
  for (const p of pollers) p.close();
  pollers.clear();
  for (const fd of fds) N.close(fd);
  fds.clear();
});

function pair(): [number, number] {
  const [a, b] = N.socketpair(C.AF_UNIX, C.SOCK_STREAM, 0);
  fds.add(a).add(b);
  return [a, b];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(cond: () => boolean, what: string, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await sleep(2);
  }
}

/** Everything readable on `fd` now. */
function drain(fd: number): Buffer {
  const parts: Buffer[] = [];
  for (;;) {
    try {
      const r = N.recv(fd, 1 << 20, C.MSG_DONTWAIT);
      if (r.length === 0) break;
      parts.push(r.data);
    } catch (e) {
      if ((e as { code?: string }).code === 'EAGAIN') break;
      throw e;
    }
  }
  return Buffer.concat(parts);
}

/** Server-to-client frames as a WebSocket client parses them: each FIN + binary, unmasked; the payloads. */
function parseFrames(wire: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  while (at < wire.length) {
    expect(wire[at]).toBe(0x82);
    let len = wire[at + 1]!;
    expect(len & 0x80).toBe(0); // unmasked
    let head = 2;
    if (len === 126) {
      len = wire.readUInt16BE(at + 2);
      head = 4;
      expect(len).toBeGreaterThanOrEqual(126); // the shortest header, as RFC 6455 asks
    } else expect(len).toBeLessThan(126);
    expect(at + head + len).toBeLessThanOrEqual(wire.length);
    out.push(wire.subarray(at + head, at + head + len));
    at += head + len;
  }
  return out;
}

interface Batch {
  bytes: Buffer[];
  written: number;
}

/** A reader on `fd` in direct mode to `target` (gate open), releasing each slot once its bytes are out. */
function directReader(fd: number, target: number, gate: Int32Array, onBatch?: (b: Batch) => void) {
  const [slots, slotBytes, budget] = [8, 64 * 1024, 1 << 20];
  const batches: Batch[] = [];
  const p = N.createPoller(fd, () => undefined);
  pollers.add(p);
  const pool = Buffer.from(
    p.startReading(slots, slotBytes, budget, (table, count, _eof, _err, written) => {
      const s = Array.from({ length: count }, (_, i) => table[2 * i]!);
      const b = { bytes: s.map((slot, i) => Buffer.from(pool.subarray(slot * slotBytes, slot * slotBytes + table[2 * i + 1]!))), written };
      batches.push(b);
      onBatch?.(b);
      for (const slot of s) p.release(slot);
    }),
  );
  expect(p.setDirect(target, gate, FRAME)).toBe(true);
  return { p, batches };
}

describe('framesAfter', () => {
  it('gives, after any number of bytes written, exactly the rest of the frames', () => {
    const payloads = [randomBytes(3), randomBytes(125), randomBytes(126), randomBytes(2 * FRAME + 7), Buffer.alloc(0), randomBytes(FRAME)];
    const whole = Buffer.concat(framesAfter(payloads, 0, FRAME));
    expect(parseFrames(whole).map((f) => f.length)).toEqual([3, 125, 126, FRAME, FRAME, 7, FRAME]);
    expect(Buffer.concat(parseFrames(whole))).toEqual(Buffer.concat(payloads));
    for (let written = 0; written <= whole.length; written++) {
      const rest = Buffer.concat(framesAfter(payloads, written, FRAME));
      expect(rest.length).toBe(whole.length - written);
      if (rest.length) expect(rest.equals(whole.subarray(written))).toBe(true);
    }
  });

  it('writes the shortest header', () => {
    expect([...frameHeader(0)]).toEqual([0x82, 0]);
    expect([...frameHeader(125)]).toEqual([0x82, 125]);
    expect([...frameHeader(126)]).toEqual([0x82, 126, 0, 126]);
    expect([...frameHeader(65535)]).toEqual([0x82, 126, 0xff, 0xff]);
    expect([...frameHeader(16 * 1024)]).toEqual([0x82, 126, 0x40, 0]);
    // full frames share one header; each appears whole in the rest
    const rest = framesAfter([randomBytes(3 * FRAME)], 0, FRAME);
    expect(rest.filter((_, i) => i % 2 === 0).map((h) => [...h])).toEqual(Array(3).fill([0x82, 126, 0x40, 0]));
  });
});

describe('Poller direct mode', () => {
  it('needs a reader, an Int32Array gate and 1..65535-byte frames', () => {
    const [a] = pair();
    const p = N.createPoller(a, () => undefined);
    pollers.add(p);
    expect(p.setDirect(a, new Int32Array(1), FRAME)).toBe(false); // no reader
    p.startReading(2, 1024, 4096, () => undefined);
    expect(() => p.setDirect(a, new Uint8Array(4) as unknown as Int32Array, FRAME)).toThrow(TypeError);
    expect(() => p.setDirect(a, new Int32Array(0), FRAME)).toThrow(TypeError);
    expect(() => p.setDirect(a, new Int32Array(1), 65536)).toThrow(RangeError);
    expect(() => p.setDirect(a, new Int32Array(1), 0)).toThrow(RangeError);
    expect(p.stats().direct).toBe(false);
    expect(p.setDirect(a, new Int32Array(1), FRAME)).toBe(true);
    expect(p.stats().direct).toBe(true);
    expect(p.setDirect(-1)).toBe(true);
    expect(p.stats().direct).toBe(false);
  });

  it('writes each read as frames of at most frameBytes before the callback, which is told how much went', async () => {
    const [src, peer] = pair();
    const [conn, client] = pair();
    const gate = new Int32Array([1]);
    const r = directReader(src, conn, gate);
    const sent = [randomBytes(10), randomBytes(40_000), randomBytes(126)];
    const got: Buffer[] = [];
    for (const msg of sent) {
      const before = r.batches.length;
      N.send(peer, msg, 0);
      await until(() => r.batches.length > before, 'a read');
      got.push(drain(client));
    }
    for (const [i, wire] of got.entries()) {
      const frames = parseFrames(wire);
      expect(frames.every((f) => f.length <= FRAME)).toBe(true);
      expect(Buffer.concat(frames)).toEqual(sent[i]);
    }
    expect(parseFrames(got[1]!).map((f) => f.length)).toEqual([FRAME, FRAME, 40_000 - 2 * FRAME]);
    // the callback's `written` is every byte of the frames, headers included; the bytes are still the slots'
    expect(r.batches.map((b) => b.written)).toEqual(got.map((w) => w.length));
    expect(Buffer.concat(r.batches.flatMap((b) => b.bytes))).toEqual(Buffer.concat(sent));
    expect(r.p.stats()).toMatchObject({ directWrites: 3, directBytes: got.reduce((n, w) => n + w.length, 0), directPartial: 0 });
  });

  it('writes nothing while the gate is shut or after setDirect(-1): JS sends those bytes', async () => {
    const [src, peer] = pair();
    const [conn, client] = pair();
    const gate = new Int32Array([0]);
    const r = directReader(src, conn, gate);
    N.send(peer, Buffer.from('shut'), 0);
    await until(() => r.batches.length === 1, 'read 1');
    expect(r.batches[0]!.written).toBe(0);
    gate[0] = 1;
    N.send(peer, Buffer.from('open'), 0);
    await until(() => r.batches.length === 2, 'read 2');
    expect(r.batches[1]!.written).toBe(6);
    r.p.setDirect(-1);
    N.send(peer, Buffer.from('off'), 0);
    await until(() => r.batches.length === 3, 'read 3');
    expect(r.batches[2]!.written).toBe(0);
    expect(parseFrames(drain(client)).map(String)).toEqual(['open']);
  });

  it('stops where the connection is full; JS completes from framesAfter and the client gets every byte', async () => {
    const [src, peer] = pair();
    const [conn, client] = pair();
    N.setsockoptInt(conn, C.SOL_SOCKET, C.SO_SNDBUF, 4096);
    const gate = new Int32Array([1]);
    const wire: Buffer[] = [];
    let partial = 0;
    // the callback does what the consumer does, in the same order: the addon's write came first, then JS's
    // rest of it goes before anything else (the test's client reads both straight away)
    const r = directReader(src, conn, gate, (b) => {
      wire.push(drain(client));
      const rest = framesAfter(b.bytes, b.written, FRAME);
      if (rest.length && b.written > 0) partial++;
      wire.push(Buffer.concat(rest));
    });
    const data = randomBytes(3 << 20);
    let fed = 0;
    const end = Date.now() + 10_000;
    while (fed < data.length) {
      if (Date.now() > end) throw new Error(`stuck: fed ${fed}`);
      try {
        fed += N.send(peer, data.subarray(fed, fed + 256 * 1024), C.MSG_DONTWAIT);
      } catch (e) {
        if ((e as { code?: string }).code !== 'EAGAIN') throw e;
      }
      await sleep(1);
    }
    let seen = -1;
    while (seen !== r.batches.length) {
      seen = r.batches.length;
      await sleep(50);
    }
    const frames = parseFrames(Buffer.concat(wire));
    expect(frames.every((f) => f.length <= FRAME)).toBe(true);
    expect(Buffer.concat(frames).equals(data)).toBe(true);
    expect(partial).toBeGreaterThan(0);
    expect(r.p.stats().directPartial).toBe(partial);
  });
});

describe('the consumer stream\'s gate (src/plugins/websocket.ts directGate)', () => {
  it('is open only while the WebSocket is open and none of its own writes is pending; shut for good by close or destroy', async () => {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await once(wss, 'listening');
    /** A client connected to `wss`, and the server's end of it. */
    const connected = async () => {
      const accepted = once(wss, 'connection');
      const client = new WebSocket(`ws://127.0.0.1:${(wss.address() as { port: number }).port}`);
      client.on('error', () => undefined);
      const [server] = (await accepted) as [WebSocket];
      await once(client, 'open');
      return { client, server };
    };
    /** 8 MiB sent to a client that stopped reading, still pending; deliver() lets the client read it all. */
    const stalledSend = async (client: WebSocket, server: WebSocket) => {
      const transport = (client as unknown as { _socket: Socket })._socket;
      transport.pause();
      const big = randomBytes(8 << 20);
      server.send(big);
      await sleep(50);
      expect(server.bufferedAmount).toBeGreaterThan(0);
      let got = 0;
      client.on('message', (m: Buffer) => (got += m.length));
      return {
        async deliver() {
          transport.resume();
          await until(() => got === big.length, 'the message');
        },
      };
    };
    try {
      const { client, server } = await connected();
      const d = directGate(server)!;
      expect(d.fd).toBeGreaterThan(2);
      expect(d.gate[0]).toBe(1);
      // a ping goes out at once: shut while its write is pending, open once its callback ran
      server.ping();
      expect(d.gate[0]).toBe(0);
      await until(() => d.gate[0] === 1, 'open after the ping');
      // a client that does not read: the writes stay pending, and so the gate stays shut until they are out
      const send = await stalledSend(client, server);
      expect(d.gate[0]).toBe(0);
      await send.deliver();
      await until(() => d.gate[0] === 1, 'open after the send');
      // writes made before the gate (a resume's replay): shut until they are out too
      const { client: client3, server: server3 } = await connected();
      const earlier = await stalledSend(client3, server3);
      const d3 = directGate(server3)!;
      expect(d3.gate[0]).toBe(0);
      await earlier.deliver();
      await until(() => d3.gate[0] === 1, 'open once it is out');
      client3.terminate();
      // closing: shut for good
      server.close(1000);
      expect(d.gate[0]).toBe(0);
      await once(client, 'close');
      await sleep(20);
      expect(d.gate[0]).toBe(0);

      // destroyed without a write (the client vanished): shut before the fd closes
      const { client: client2, server: server2 } = await connected();
      const d2 = directGate(server2)!;
      expect(d2.gate[0]).toBe(1);
      (server2 as unknown as { _socket: Socket })._socket.destroy();
      expect(d2.gate[0]).toBe(0);
      client2.terminate();
    } finally {
      for (const c of wss.clients) c.terminate();
      wss.close();
    }
  });
});

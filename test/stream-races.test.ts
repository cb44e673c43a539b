// Close races on the consumer stream (DESIGN.md section 5), 20 repetitions each, real WebSocket clients and
// real TCP peers: a peer that sends 4 MiB and closes at once loses nothing before `eof`; bytes a consumer
// sends just before {op:"close"} all reach the peer before its EOF (where a naive bridge loses the tail).
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { startApp, TOKEN, until, type TestApp } from './helpers.js';

const MiB = 1024 * 1024;
const REPS = 20;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let t: TestApp;
let port = 0;
const sockets: WebSocket[] = [];
const peers: net.Socket[] = [];
const timings: Record<string, number[]> = {};

beforeEach(async () => {
  t = await startApp();
  await t.app.listen({ host: '127.0.0.1', port: 0 });
  port = (t.app.server.address() as net.AddressInfo).port;
});
afterEach(async () => {
  for (const ws of sockets.splice(0)) if (ws.readyState !== WebSocket.CLOSED) ws.terminate();
  for (const p of peers.splice(0)) p.destroy();
  await t.close();
});
afterAll(() => {
  for (const [name, ms] of Object.entries(timings)) {
    const sorted = [...ms].sort((a, b) => a - b);
    const avg = ms.reduce((a, b) => a + b, 0) / ms.length;
    console.log(
      `[races] ${name}: ${ms.length} reps, min ${sorted[0]} ms, median ${sorted[Math.floor(sorted.length / 2)]} ms, ` +
        `max ${sorted.at(-1)} ms, mean ${avg.toFixed(0)} ms`,
    );
  }
});

interface Client {
  ws: WebSocket;
  events: any[];
  /** Binary frames, or data decoded from JSON data events. */
  chunks: Buffer[];
  bytes: number;
  /** Bytes received when each text event arrived. */
  bytesAt: Map<any, number>;
  violations: string[];
  opened: Promise<void>;
  closed: Promise<{ code: number; reason: string }>;
}

function client(path: string): Client {
  const ws = new WebSocket(`ws://127.0.0.1:${port}${path}${path.includes('?') ? '&' : '?'}token=${TOKEN}`);
  sockets.push(ws);
  const c: Client = { ws, events: [], chunks: [], bytes: 0, bytesAt: new Map(), violations: [], opened: once(ws, 'open').then(() => undefined), closed: undefined as any };
  c.closed = new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  ws.on('error', () => undefined);
  ws.on('message', (data: Buffer, isBinary) => {
    if (isBinary) {
      c.chunks.push(data);
      c.bytes += data.length;
      return;
    }
    const ev = JSON.parse(data.toString());
    if (ev.type === 'data') {
      const b = Buffer.from(ev.data, ev.encoding);
      // JSON data events are contiguous and their sizes true
      if (ev.offset !== c.bytes || b.length !== ev.bytes) c.violations.push(`data at ${ev.offset} (${ev.bytes} bytes) after ${c.bytes}`);
      c.chunks.push(b);
      c.bytes += b.length;
    }
    c.bytesAt.set(ev, c.bytes);
    c.events.push(ev);
  });
  return c;
}

const eventOf = (c: Client, type: string, ms = 10_000) => until(() => c.events.find((e) => e.type === type), `${type} event`, ms);

/** A TCP connection: the service's accepted socket `id` and the net peer (half-open allowed). */
async function session(): Promise<{ id: string; peer: net.Socket }> {
  const c = await t.call('POST', '/v1/sockets', { family: 'inet', type: 'stream' });
  const l = c.body.id as string;
  expect((await t.call('POST', `/v1/sockets/${l}/bind`, { address: '127.0.0.1', port: 0 })).status).toBe(200);
  const lp = (await t.call('POST', `/v1/sockets/${l}/listen`, {})).body.local.port;
  const peer = net.connect({ port: lp, host: '127.0.0.1', allowHalfOpen: true });
  peer.on('error', () => undefined);
  peers.push(peer);
  await once(peer, 'connect');
  const a = await t.call('POST', `/v1/sockets/${l}/accept`, { timeoutMs: 2000 });
  expect(a.status).toBe(201);
  expect((await t.call('DELETE', `/v1/sockets/${l}`)).status).toBe(200);
  return { id: a.body.id, peer };
}

describe('close races', () => {
  // The peer writes 4 MiB and ends (FIN) or destroys (close(2): FIN after the queued data) at once. Variants
  // rotate: consumer attached before or after the peer's burst, binary frames or JSON base64 events.
  it(`a peer that sends 4 MiB and closes at once: every byte reaches the consumer before eof (${REPS}x)`, async () => {
    const SIZE = 4 * MiB;
    for (let rep = 0; rep < REPS; rep++) {
      const { id, peer } = await session();
      const data = randomBytes(SIZE);
      const json = rep % 4 === 3;
      const attachFirst = rep % 2 === 0;
      const destroy = rep % 3 === 1;
      const query = json ? '?encoding=base64' : '?binary=true';
      const started = Date.now();
      let c: Client | undefined;
      if (attachFirst) {
        c = client(`/v1/sockets/${id}/stream${query}`);
        await c.opened;
      }
      if (destroy) peer.write(data, () => peer.destroy());
      else peer.end(data);
      if (!c) {
        c = client(`/v1/sockets/${id}/stream${query}`);
        await c.opened;
      }
      const eof = await eventOf(c, 'eof');
      const ms = Date.now() - started;
      (timings[`peer 4 MiB + ${destroy ? 'destroy' : 'end'}`] ??= []).push(ms);
      expect(c.bytesAt.get(eof), `rep ${rep}: bytes before eof`).toBe(SIZE);
      expect(eof.offset, `rep ${rep}: eof offset`).toBe(SIZE);
      expect(sha256(Buffer.concat(c.chunks)), `rep ${rep}: hash`).toBe(sha256(data));
      expect(c.events.filter((e) => e.type === 'error')).toEqual([]);
      expect(c.violations).toEqual([]);
      // EOF does not close the socket (DESIGN.md section 3); the consumer closes it: closed, then 1000
      c.ws.send(JSON.stringify({ op: 'close' }));
      expect((await c.closed).code).toBe(1000);
      const types = c.events.map((e) => e.type).filter((ty) => ty !== 'data');
      expect(types.indexOf('eof')).toBeLessThan(types.indexOf('closed'));
      expect(types.at(-1)).toBe('closed');
      expect(c.bytesAt.get(c.events.at(-1))).toBe(SIZE);
      const s = (await t.call('GET', `/v1/sockets/${id}`)).body;
      expect(s.state).toBe('closed');
      expect(s.stats.bytesReceived).toBe(SIZE);
      peer.destroy();
    }
  });

  // The consumer sends 1-4 MiB as several binary frames and {op:"close"} right behind them, without waiting.
  // Variants: the client also starts the WebSocket close handshake at once (its frames are still served).
  it(`bytes sent just before {op:"close"} all reach the peer, then EOF (${REPS}x)`, async () => {
    for (let rep = 0; rep < REPS; rep++) {
      const { id, peer } = await session();
      const got: Buffer[] = [];
      let gotBytes = 0;
      peer.on('data', (d: Buffer) => {
        got.push(d);
        gotBytes += d.length;
      });
      let bytesAtEnd = -1;
      let reset = false;
      // EOF ('end'), or a reset that ends the connection without one (the test then fails)
      const ended = new Promise<void>((resolve) => {
        peer.once('end', () => {
          bytesAtEnd = gotBytes;
          resolve();
        });
        peer.once('close', () => resolve());
        peer.once('error', () => (reset = true));
      });
      const size = randomInt(1 * MiB, 4 * MiB + 1);
      const data = randomBytes(size);
      const clientCloses = rep % 3 === 2;
      // every other rep, the socket also holds unread input when it closes (the peer streams 12 MiB at it
      // and the consumer does not read): close(2) then sends RST, and the kernel drops whatever is still in
      // the send queue, unless the close waits until the peer has acknowledged everything
      const unreadInput = rep % 2 === 1;
      const c = client(`/v1/sockets/${id}/stream?binary=true`);
      await c.opened;
      if (unreadInput) {
        c.ws.pause();
        peer.write(randomBytes(12 * MiB));
        await until(async () => (await t.call('GET', `/v1/sockets/${id}`)).body.kernel.recvQueue > 0, 'unread input');
      }
      const started = Date.now();
      for (let off = 0; off < size; ) {
        const n = Math.min(size - off, randomInt(1, 512 * 1024));
        c.ws.send(data.subarray(off, off + n));
        off += n;
      }
      c.ws.send(JSON.stringify({ op: 'close' }));
      if (clientCloses) c.ws.close(1000, 'bye');
      await ended;
      const ms = Date.now() - started;
      c.ws.resume();
      (timings[`consumer 1-4 MiB + {op:close}${clientCloses ? ' + ws.close()' : ''}${unreadInput ? ', unread input' : ''}`] ??= []).push(ms);
      expect(bytesAtEnd, `rep ${rep}: bytes before EOF (got ${gotBytes}, reset ${reset})`).toBe(size);
      expect(sha256(Buffer.concat(got)), `rep ${rep}: hash`).toBe(sha256(data));
      const closed = await c.closed;
      expect(closed.code).toBe(1000);
      if (!clientCloses) {
        expect(c.events.filter((e) => e.type === 'error')).toEqual([]);
        expect(c.events.at(-1)).toMatchObject({ type: 'closed', socket: id });
      }
      const s = await until(async () => {
        const r = (await t.call('GET', `/v1/sockets/${id}`)).body;
        return r.state === 'closed' && r;
      }, 'socket closed');
      expect(s.stats.bytesSent).toBe(size);
      peer.destroy();
    }
  });
});

// The consumer stream (DESIGN.md section 5) with real WebSocket clients against a listening app and real
// TCP peers (node:net): backpressure end to end, JSON and binary data, client ops, one consumer at a time,
// autoAccept, resume with ?offset=, and WebSocket liveness (ping/pong).
import dgram from 'node:dgram';
import { spawn } from 'node:child_process';
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket, type ClientOptions } from 'ws';
import type { Config } from '../src/config.js';
import { startApp, TOKEN, until, type TestApp } from './helpers.js';

const MiB = 1024 * 1024;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let t: TestApp | undefined;
let port = 0;
const sockets: WebSocket[] = [];
const peers: net.Socket[] = [];
const udpPeers: dgram.Socket[] = [];

/** A listening app (real WebSocket clients need a port). */
async function boot(overrides: Partial<Config> = {}): Promise<TestApp> {
  t = await startApp(overrides);
  await t.app.listen({ host: '127.0.0.1', port: 0 });
  port = (t.app.server.address() as net.AddressInfo).port;
  return t;
}

afterEach(async () => {
  for (const ws of sockets.splice(0)) if (ws.readyState !== WebSocket.CLOSED) ws.terminate();
  for (const p of peers.splice(0)) p.destroy();
  for (const p of udpPeers.splice(0)) p.close();
  await t?.close();
  t = undefined;
});

interface Client {
  ws: WebSocket;
  /** Text frames, parsed. */
  events: any[];
  /** Binary frames (unless onBinary takes them). */
  chunks: Buffer[];
  binBytes: number;
  /** Frames in arrival order: 'b' for binary, the event type for text. */
  order: string[];
  opened: Promise<void>;
  closed: Promise<{ code: number; reason: string }>;
  /** The HTTP status of a refused upgrade (opened rejects; no close event follows). */
  refused?: number;
}

/** A WebSocket client on `path` (token in the query unless `auth` says otherwise). */
function client(
  path: string,
  opts: { auth?: 'query' | 'header' | 'none'; ws?: ClientOptions; onBinary?: (b: Buffer) => void } = {},
): Client {
  const auth = opts.auth ?? 'query';
  const sep = path.includes('?') ? '&' : '?';
  const url = `ws://127.0.0.1:${port}${path}${auth === 'query' ? `${sep}token=${TOKEN}` : ''}`;
  const ws = new WebSocket(url, {
    ...(auth === 'header' ? { headers: { authorization: `Bearer ${TOKEN}` } } : {}),
    ...opts.ws,
  });
  sockets.push(ws);
  const c: Client = { ws, events: [], chunks: [], binBytes: 0, order: [], opened: undefined as any, closed: undefined as any };
  c.opened = new Promise((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (req, res) => {
      c.refused = res.statusCode;
      res.resume();
      req.destroy();
      reject(new Error(`upgrade refused: ${res.statusCode}`));
    });
    ws.once('error', reject);
  });
  c.opened.catch(() => undefined);
  c.closed = new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  ws.on('error', () => undefined);
  ws.on('message', (data: Buffer, isBinary) => {
    if (isBinary) {
      c.order.push('b');
      c.binBytes += data.length;
      if (opts.onBinary) opts.onBinary(data);
      else c.chunks.push(data);
      return;
    }
    const ev = JSON.parse(data.toString());
    // kernel samples (tcp, pending) arrive whenever the sampler runs; `order` is about everything else
    if (ev.type !== 'tcp' && ev.type !== 'pending') c.order.push(ev.type);
    c.events.push(ev);
  });
  return c;
}

const eventOf = (c: Client, type: string, what = type, ms = 5000) =>
  until(() => c.events.find((e) => e.type === type), `${what} event`, ms);

/** A peer's received bytes, hashed on the fly, and its EOF. */
function reader(peer: net.Socket) {
  const parts: Buffer[] = [];
  const r = {
    parts,
    bytes: 0,
    ended: new Promise<void>((resolve) => peer.once('end', resolve)),
    data: () => Buffer.concat(parts),
  };
  peer.on('data', (d: Buffer) => {
    parts.push(d);
    r.bytes += d.length;
  });
  return r;
}

async function listener(label?: string): Promise<{ id: string; port: number }> {
  const c = await t!.call('POST', '/v1/sockets', { family: 'inet', type: 'stream', ...(label ? { label } : {}) });
  expect(c.status).toBe(201);
  expect((await t!.call('POST', `/v1/sockets/${c.body.id}/bind`, { address: '127.0.0.1', port: 0 })).status).toBe(200);
  const l = await t!.call('POST', `/v1/sockets/${c.body.id}/listen`, {});
  expect(l.status).toBe(200);
  return { id: c.body.id, port: l.body.local.port };
}

function peerTo(p: number): net.Socket {
  // half-open allowed: a peer that got EOF may still send, as a C peer may
  const peer = net.connect({ port: p, host: '127.0.0.1', allowHalfOpen: true });
  peer.on('error', () => undefined);
  peers.push(peer);
  return peer;
}

/** A TCP connection: the service's accepted socket `id`, and the net peer on the other end. */
async function session(): Promise<{ id: string; peer: net.Socket }> {
  const l = await listener();
  const peer = peerTo(l.port);
  await once(peer, 'connect');
  const a = await t!.call('POST', `/v1/sockets/${l.id}/accept`, { timeoutMs: 2000 });
  expect(a.status).toBe(201);
  expect((await t!.call('DELETE', `/v1/sockets/${l.id}`)).status).toBe(200);
  return { id: a.body.id, peer };
}

const getSocket = async (id: string) => (await t!.call('GET', `/v1/sockets/${id}`)).body;

/**
 * The TCP peer and the slow WebSocket client of the backpressure test, in a child process so that the
 * RSS sampled here is the service's own (the clients' buffers would otherwise blur it). It talks over IPC:
 * 'connected' (peer up) → 'id' → 'open' → 'go' → 'progress'... → 'done' → 'close' → 'closed'.
 */
const BACKPRESSURE_CLIENT = String.raw`
import net from 'node:net';
import { createHash, randomFillSync } from 'node:crypto';
import { once } from 'node:events';
import { WebSocket } from 'ws';
const cfg = JSON.parse(process.argv[1]);
const send = (m) => process.connected && process.send(m);
const peer = net.connect({ port: cfg.listenPort, host: '127.0.0.1', allowHalfOpen: true });
peer.on('error', (e) => send({ t: 'fail', error: 'peer: ' + e.message }));
peer.on('connect', () => send({ t: 'connected', localPort: peer.localPort }));
const inHash = createHash('sha256');
const outHash = createHash('sha256');
let ws, received = 0, written = 0, writeFalse = 0, blockedMs = 0, maxBlockedMs = 0, receivedWhenPeerDone = -1;
const order = [];
process.on('message', async (m) => {
  if (m.t === 'id') {
    ws = new WebSocket('ws://127.0.0.1:' + cfg.wsPort + '/v1/sockets/' + m.id + '/stream?binary=true&token=' + cfg.token);
    ws.on('error', (e) => send({ t: 'fail', error: 'ws: ' + e.message }));
    ws.on('message', (data, isBinary) => {
      if (isBinary) {
        inHash.update(data);
        received += data.length;
        if (order.at(-1) !== 'b') order.push('b');
        return;
      }
      const ev = JSON.parse(data.toString());
      // kernel samples (tcp, pending) arrive whenever the sampler runs: order is about data and the rest
      if (ev.type !== 'tcp' && ev.type !== 'pending') order.push(ev.type);
      if (ev.type === 'eof') {
        clearInterval(throttle);
        clearInterval(progress);
        ws.resume();
        send({ t: 'done', eofOffset: ev.offset, received, written, writeFalse, blockedMs, maxBlockedMs,
          receivedWhenPeerDone, order, inHash: inHash.digest('hex'), outHash: outHash.digest('hex') });
      }
    });
    ws.on('open', () => send({ t: 'open' }));
    ws.on('close', (code) => { send({ t: 'closed', code }); peer.destroy(); process.disconnect(); });
  }
  if (m.t === 'close') ws.close();
  if (m.t !== 'go') return;
  const started = Date.now();
  // the slow reader: pause the WebSocket whenever it is ahead of the rate, resume when time caught up
  var throttle = setInterval(() => {
    if (received > (cfg.rate * (Date.now() - started)) / 1000) ws.pause();
    else ws.resume();
  }, 5);
  var progress = setInterval(() => send({ t: 'progress', written, received }), 10);
  // chunks are recycled once written (write callback), below the 16 KiB high-water mark of net: write()
  // answers false only when the kernel's send buffer is full
  const free = [];
  while (written < cfg.total) {
    const chunk = free.pop() ?? Buffer.allocUnsafeSlow(cfg.write);
    randomFillSync(chunk);
    outHash.update(chunk);
    const ok = peer.write(chunk, () => free.push(chunk));
    written += chunk.length;
    if (!ok) {
      writeFalse++;
      const t0 = Date.now();
      await once(peer, 'drain');
      const waited = Date.now() - t0;
      blockedMs += waited;
      maxBlockedMs = Math.max(maxBlockedMs, waited);
    }
  }
  receivedWhenPeerDone = received;
  peer.end();
});
`;

describe('consumer stream: backpressure end to end', () => {
  // A peer writes 64 MiB as fast as TCP lets it into a socket whose consumer takes ~32 MiB/s. The service
  // must read only as fast as the WebSocket drains, so the surplus waits in the kernel (the service socket's
  // receive queue, the peer's send queue) and the peer's write() blocks; the service's memory stays flat.
  it('a slow consumer slows the TCP peer; every byte arrives in order; RSS stays bounded', async () => {
    const HIGH_WATER = 1 * MiB;
    await boot({ streamHighWaterBytes: HIGH_WATER });
    const l = await listener();
    const TOTAL = 64 * MiB;
    const RATE = 32 * MiB; // bytes per second the client takes
    const child = spawn(
      process.execPath,
      ['--input-type=module', '-e', BACKPRESSURE_CLIENT, JSON.stringify({ listenPort: l.port, wsPort: port, token: TOKEN, total: TOTAL, rate: RATE, write: 8192 })],
      { cwd: process.cwd(), stdio: ['ignore', 'inherit', 'inherit', 'ipc'] },
    );
    const exited = once(child, 'exit');
    const inbox: any[] = [];
    let last = { written: 0, received: 0 };
    child.on('message', (m: any) => {
      if (m.t === 'progress') last = m;
      else inbox.push(m);
    });
    const next = async (type: string, ms = 10_000) => {
      const m = await until(() => inbox.find((x) => x.t === type || x.t === 'fail'), `child ${type}`, ms);
      if (m.t === 'fail') throw new Error(m.error);
      return m;
    };
    try {
      await next('connected');
      const a = await t!.call('POST', `/v1/sockets/${l.id}/accept`, { timeoutMs: 2000 });
      expect(a.status).toBe(201);
      const id: string = a.body.id;
      child.send({ t: 'id', id });
      await next('open');
      const serverWs = [...t!.app.websocketServer.clients][0]!;

      const mem0 = process.memoryUsage();
      let maxRss = mem0.rss;
      let maxArrayBuffers = mem0.arrayBuffers;
      let maxLag = 0;
      let maxBuffered = 0;
      let maxKernelRecvQueue = 0;
      let running = true;
      const sampler = setInterval(() => {
        const m = process.memoryUsage();
        maxRss = Math.max(maxRss, m.rss);
        maxArrayBuffers = Math.max(maxArrayBuffers, m.arrayBuffers);
        maxLag = Math.max(maxLag, last.written - last.received);
        maxBuffered = Math.max(maxBuffered, serverWs.bufferedAmount);
      }, 10);
      const kernelSampler = (async () => {
        while (running) {
          const s = await getSocket(id);
          maxKernelRecvQueue = Math.max(maxKernelRecvQueue, s.kernel?.recvQueue ?? 0);
          await new Promise((r) => setTimeout(r, 25));
        }
      })();
      const started = Date.now();
      child.send({ t: 'go' });
      let done: any;
      try {
        done = await next('done', 25_000);
      } finally {
        running = false;
        clearInterval(sampler);
        await kernelSampler;
      }
      const elapsed = Date.now() - started;
      const rssGrowth = maxRss - mem0.rss;
      console.log(
        `[backpressure] 64 MiB in ${elapsed} ms; peer write()=false ${done.writeFalse}x, blocked ${done.blockedMs} ms (max ${done.maxBlockedMs} ms); ` +
          `max lag ${(maxLag / MiB).toFixed(1)} MiB; left when peer done ${((TOTAL - done.receivedWhenPeerDone) / MiB).toFixed(1)} MiB; ` +
          `max kernel recvQueue ${(maxKernelRecvQueue / MiB).toFixed(2)} MiB; max ws bufferedAmount ${(maxBuffered / MiB).toFixed(2)} MiB; ` +
          `service RSS ${(mem0.rss / MiB).toFixed(0)} -> max ${(maxRss / MiB).toFixed(0)} MiB (growth ${(rssGrowth / MiB).toFixed(1)} MiB); ` +
          `arrayBuffers +${((maxArrayBuffers - mem0.arrayBuffers) / MiB).toFixed(1)} MiB`,
      );

      expect(done.received).toBe(TOTAL);
      expect(done.written).toBe(TOTAL);
      expect(done.inHash).toBe(done.outHash);
      expect(done.eofOffset).toBe(TOTAL);
      // binary frames, then eof: nothing after it
      expect(done.order).toEqual(['b', 'eof']);
      // the throttle held: the transfer took at least ~TOTAL/RATE
      expect(elapsed).toBeGreaterThan((TOTAL / RATE) * 1000 * 0.9);
      // the peer was held back by TCP flow control: its writes blocked (with 8 KiB writes, write() is false
      // only when the kernel's send buffer is full)...
      expect(done.writeFalse).toBeGreaterThan(0);
      expect(done.blockedMs).toBeGreaterThan(0);
      // ...so it could run ahead of the consumer only by what the buffers on the way hold: far more than
      // nothing (data waited), far less than the stream (without backpressure it gets ~62 MiB ahead)
      expect(maxLag).toBeGreaterThan(4 * MiB);
      expect(maxLag).toBeLessThan(32 * MiB);
      expect(TOTAL - done.receivedWhenPeerDone).toBeGreaterThan(4 * MiB);
      expect(TOTAL - done.receivedWhenPeerDone).toBeLessThan(32 * MiB);
      // ...mostly in the kernel (the service socket's receive queue, the peer's send queue), not in the
      // service: its WebSocket buffer stayed near the high-water mark (plus one read budget of 1 MiB)
      expect(maxKernelRecvQueue).toBeGreaterThan(512 * 1024);
      expect(maxBuffered).toBeLessThanOrEqual(HIGH_WATER + 1 * MiB + 256 * 1024);
      expect(maxLag).toBeGreaterThan(3 * maxBuffered);
      expect(rssGrowth).toBeLessThan(64 * MiB);

      child.send({ t: 'close' });
      expect((await next('closed')).code).toBe(1005);
    } finally {
      if (child.exitCode === null) child.kill();
      await exited;
    }
  });
});

describe('consumer stream: data encodings', () => {
  it('JSON data events carry offset, bytes and base64 data that reassemble to what the peer sent', async () => {
    await boot();
    const { id, peer } = await session();
    const c = client(`/v1/sockets/${id}/stream?encoding=base64`);
    await c.opened;
    const sent = randomBytes(700 * 1024 + 13);
    peer.end(sent);
    const eof = await eventOf(c, 'eof');
    const data = c.events.filter((e) => e.type === 'data');
    expect(c.chunks).toHaveLength(0);
    expect(data.length).toBeGreaterThan(0);
    let offset = 0;
    const parts: Buffer[] = [];
    let lastSeq = 0;
    for (const e of data) {
      expect(e).toMatchObject({ socket: id, type: 'data', offset, encoding: 'base64' });
      expect(typeof e.seq).toBe('number');
      expect(e.seq).toBeGreaterThan(lastSeq);
      lastSeq = e.seq;
      const b = Buffer.from(e.data, 'base64');
      expect(b.length).toBe(e.bytes);
      parts.push(b);
      offset += b.length;
    }
    expect(sha256(Buffer.concat(parts))).toBe(sha256(sent));
    expect(eof).toMatchObject({ socket: id, type: 'eof', offset: sent.length });
    expect(eof.seq).toBeGreaterThan(lastSeq);
    c.ws.close(1000);
    await c.closed;
  });

  it('hex and utf8 encodings, and binary frames with ?binary=true', async () => {
    await boot();
    const s1 = await session();
    const hex = client(`/v1/sockets/${s1.id}/stream?encoding=hex`);
    await hex.opened;
    s1.peer.write(Buffer.from([0, 1, 0xfe, 0xff]));
    const d = await eventOf(hex, 'data');
    expect(d).toMatchObject({ offset: 0, bytes: 4, data: '0001feff', encoding: 'hex' });

    const s2 = await session();
    const utf = client(`/v1/sockets/${s2.id}/stream`);
    await utf.opened;
    s2.peer.write('héllo');
    expect(await eventOf(utf, 'data')).toMatchObject({ offset: 0, bytes: 6, data: 'héllo', encoding: 'utf8' });

    const s3 = await session();
    const bin = client(`/v1/sockets/${s3.id}/stream?binary=true`);
    await bin.opened;
    const sent = randomBytes(300 * 1024);
    s3.peer.end(sent);
    const eof = await eventOf(bin, 'eof');
    expect(eof.offset).toBe(sent.length);
    expect(bin.events.filter((e) => e.type === 'data')).toHaveLength(0);
    expect(sha256(Buffer.concat(bin.chunks))).toBe(sha256(sent));
    expect(bin.order.indexOf('eof')).toBe(bin.order.length - 1);
    for (const c of [hex, utf, bin]) {
      c.ws.close(1000);
      await c.closed;
    }
  });
});

describe('consumer stream: client ops', () => {
  it('binary frames and {op:"send"} reach the peer in order; SHUT_WR gives it EOF; {op:"close"} closes the socket', async () => {
    await boot();
    const { id, peer } = await session();
    const got = reader(peer);
    const c = client(`/v1/sockets/${id}/stream`, { auth: 'header' });
    await c.opened;
    const big = randomBytes(2 * MiB + 7);
    const expected = Buffer.concat([
      Buffer.from('one,'),
      Buffer.from('two,'),
      big,
      Buffer.from([0xde, 0xad]),
      Buffer.from('three,'),
      Buffer.from([0xbe, 0xef]),
      Buffer.from('end'),
    ]);
    c.ws.send(Buffer.from('one,'));
    c.ws.send(JSON.stringify({ op: 'send', data: 'two,' }));
    c.ws.send(big);
    c.ws.send(JSON.stringify({ op: 'send', data: '3q0=', encoding: 'base64' }));
    c.ws.send(JSON.stringify({ op: 'send', data: 'three,', encoding: 'utf8' }));
    c.ws.send(JSON.stringify({ op: 'send', data: 'beef', encoding: 'hex' }));
    c.ws.send(Buffer.from('end'));
    c.ws.send(JSON.stringify({ op: 'shutdown', how: 'SHUT_WR' }));
    await got.ended; // EOF after the data
    expect(got.bytes).toBe(expected.length);
    expect(sha256(got.data())).toBe(sha256(expected));
    const sh = await eventOf(c, 'shutdown');
    expect(sh).toMatchObject({ socket: id, how: 'SHUT_WR' });
    const mid = await getSocket(id);
    expect(mid.state).toBe('connected');
    expect(mid.shutdown).toEqual({ read: false, write: true });
    expect(mid.stats.bytesSent).toBe(expected.length);
    // sent events are not echoed to the consumer
    expect(c.events.filter((e) => e.type === 'sent' || e.type === 'error')).toEqual([]);

    // the socket can still receive after SHUT_WR
    peer.write('still here');
    expect(await eventOf(c, 'data')).toMatchObject({ data: 'still here', offset: 0 });

    c.ws.send(JSON.stringify({ op: 'close' }));
    const closed = await c.closed;
    expect(closed.code).toBe(1000);
    const closedEv = c.events.find((e) => e.type === 'closed');
    expect(closedEv).toMatchObject({ socket: id, type: 'closed', reset: false });
    expect(c.order.at(-1)).toBe('closed');
    expect(c.events.find((e) => e.type === 'state' && e.state === 'closed')).toBeTruthy();
    const after = await getSocket(id);
    expect(after.state).toBe('closed');
    peer.end();
  });

  it('a REST DELETE while a consumer is attached ends the stream with closed and 1000', async () => {
    await boot();
    const { id } = await session();
    const c = client(`/v1/sockets/${id}/stream`);
    await c.opened;
    expect((await t!.call('DELETE', `/v1/sockets/${id}`)).status).toBe(200);
    expect((await c.closed).code).toBe(1000);
    expect(c.order.at(-1)).toBe('closed');
  });

  it('bad ops get an error event and the stream stays usable', async () => {
    await boot();
    const { id, peer } = await session();
    const got = reader(peer);
    const c = client(`/v1/sockets/${id}/stream`);
    await c.opened;
    c.ws.send('not json');
    c.ws.send(JSON.stringify({ op: 'fly' }));
    c.ws.send(JSON.stringify({ op: 'send', data: 'zz', encoding: 'hex' }));
    c.ws.send(Buffer.from('ok'));
    await until(() => got.bytes >= 2, 'peer got ok');
    await until(() => c.events.filter((e) => e.type === 'error').length >= 3, 'three error events');
    const errs = c.events.filter((e) => e.type === 'error');
    expect(errs.map((e) => e.code)).toEqual(['SOCKCTL_BAD_REQUEST', 'SOCKCTL_BAD_REQUEST', expect.any(String)]);
    expect(got.data().toString()).toBe('ok');
    expect(c.ws.readyState).toBe(WebSocket.OPEN);
    c.ws.close(1000);
    await c.closed;
  });
});

describe('consumer stream: masked frames', () => {
  it('ws unmasks client frames with bufferutil (native), not its byte-at-a-time JS loop', async () => {
    // a browser masks every frame; ws's JS unmask costs about 3 CPU-s per GB more (bench/lib/ws-client.ts)
    const { createRequire } = await import('node:module');
    const requireFromWs = createRequire(createRequire(import.meta.url).resolve('ws'));
    const { unmask } = requireFromWs('bufferutil') as { unmask: (b: Buffer, m: Buffer) => void };
    expect(Function.prototype.toString.call(unmask)).toContain('[native code]');
    const data = randomBytes(4096);
    const mask = randomBytes(4);
    const copy = Buffer.from(data);
    unmask(copy, mask);
    expect(copy.every((b, i) => b === (data[i]! ^ mask[i & 3]!))).toBe(true);
  });
});

describe('consumer stream: frame limit', () => {
  it('a frame over wsMaxPayload closes the stream with 1009; the socket and the service carry on', async () => {
    await boot({ wsMaxPayload: 1024 });
    const { id, peer } = await session();
    const got = reader(peer);
    const c = client(`/v1/sockets/${id}/stream`);
    await c.opened;
    c.ws.send(Buffer.alloc(1024, 1)); // at the limit: accepted
    c.ws.send(Buffer.alloc(1025, 2)); // over it
    expect((await c.closed).code).toBe(1009);
    await until(() => got.bytes === 1024, 'the frame within the limit');
    expect(got.data().equals(Buffer.alloc(1024, 1))).toBe(true);
    await until(() => t!.app.registry.find(id)?.consumer === null, 'consumer detached');
    expect((await getSocket(id)).state).toBe('connected');
    const again = client(`/v1/sockets/${id}/stream`);
    await again.opened;
    peer.write('after');
    expect(await eventOf(again, 'data')).toMatchObject({ data: 'after' });
    again.ws.close(1000);
    await again.closed;
  });
});

describe('consumer stream: one consumer, refusals', () => {
  it('a second consumer is refused (4409); REST recv answers 409 meanwhile, and works once it detaches', async () => {
    await boot();
    const { id, peer } = await session();
    const first = client(`/v1/sockets/${id}/stream`);
    await first.opened;
    const second = client(`/v1/sockets/${id}/stream?binary=true`);
    await second.opened;
    const refusal = await second.closed;
    expect(refusal.code).toBe(4409);
    expect(second.events).toHaveLength(1);
    expect(second.events[0]).toMatchObject({ type: 'error', code: 'SOCKCTL_STREAM_ATTACHED', socket: id });

    const r = await t!.call('POST', `/v1/sockets/${id}/recv`, { timeoutMs: 0 });
    expect(r.status).toBe(409);
    expect(r.body.code).toBe('SOCKCTL_STREAM_ATTACHED');

    // the first consumer is unaffected
    peer.write('to the first');
    expect(await eventOf(first, 'data')).toMatchObject({ data: 'to the first' });

    first.ws.close(1000);
    await first.closed;
    // detached when the server sees the close: recv then reaches the kernel (EAGAIN on an empty queue)
    await until(async () => (await t!.call('POST', `/v1/sockets/${id}/recv`, { timeoutMs: 0 })).status === 504, 'detach');
    peer.write('to REST');
    const back = await t!.call('POST', `/v1/sockets/${id}/recv`, { timeoutMs: 2000 });
    expect(back.status).toBe(200);
    expect(back.body).toMatchObject({ data: 'to REST', eof: false });

    // and a new consumer may attach
    const third = client(`/v1/sockets/${id}/stream`);
    await third.opened;
    peer.write('to the third');
    expect(await eventOf(third, 'data')).toMatchObject({ data: 'to the third', offset: 'to the first'.length + 'to REST'.length });
    third.ws.close(1000);
    await third.closed;
  });

  it('unknown socket id: error event and 4404; no or a wrong token: the upgrade is refused with 401', async () => {
    await boot();
    const missing = client('/v1/sockets/nosuchsocket/stream');
    await missing.opened;
    expect((await missing.closed).code).toBe(4404);
    expect(missing.events[0]).toMatchObject({ type: 'error', code: 'SOCKCTL_NOT_FOUND' });

    const noToken = client('/v1/sockets/nosuchsocket/stream', { auth: 'none' });
    await expect(noToken.opened).rejects.toThrow(/401/);
    expect(noToken.refused).toBe(401);

    const { id } = await session();
    const wrong = client(`/v1/sockets/${id}/stream?token=wrong`, { auth: 'none' });
    await expect(wrong.opened).rejects.toThrow(/401/);
    expect(wrong.refused).toBe(401);
    // the refused upgrades left no connection open on the server (a leaked one would also hang app.close())
    const connections = () => new Promise<number>((r) => t!.app.server.getConnections((_e, n) => r(n)));
    await until(async () => (await connections()) === 0, 'refused upgrade connections closed', 2000);
    // a refused upgrade left no consumer behind
    const ok = client(`/v1/sockets/${id}/stream`);
    await ok.opened;
    ok.ws.close(1000);
    await ok.closed;
  });
});

describe('consumer stream: autoAccept', () => {
  it('a consumer on a listener with ?autoAccept=true reports accepted (child, remote) for each connection', async () => {
    await boot();
    const l = await listener();
    const c = client(`/v1/sockets/${l.id}/stream?autoAccept=true`);
    await c.opened;
    const clients: net.Socket[] = [];
    for (let i = 0; i < 3; i++) {
      const p = peerTo(l.port);
      await once(p, 'connect');
      clients.push(p);
    }
    await until(() => c.events.filter((e) => e.type === 'accepted').length >= 3, '3 accepted events');
    const accepted = c.events.filter((e) => e.type === 'accepted');
    expect(accepted).toHaveLength(3);
    expect(new Set(accepted.map((e) => e.remote.port))).toEqual(new Set(clients.map((p) => p.localPort)));
    for (const e of accepted) {
      expect(e).toMatchObject({ socket: l.id, child: expect.any(String), remote: { address: '127.0.0.1' } });
      const child = await getSocket(e.child);
      expect(child).toMatchObject({ id: e.child, state: 'connected', listener: l.id, remote: e.remote });
      expect(child.local.port).toBe(l.port);
    }
    // nothing left in the kernel's accept queue
    expect((await getSocket(l.id)).kernel.acceptQueue).toBe(0);
    c.ws.close(1000);
    await c.closed;
    for (const p of clients) p.destroy();
  });
});

describe('consumer stream: resume with ?offset=', () => {
  /** The server saw the previous client go (a real client would retry on 4409 instead). */
  const detached = (id: string) => until(() => t!.app.registry.find(id)?.consumer === null, 'consumer detached');

  /** Reads the stream in binary mode from `offset`, terminating the client after `killAt` more bytes. */
  async function readUntilKilled(id: string, offset: number, killAt: number): Promise<Buffer[]> {
    await detached(id);
    const parts: Buffer[] = [];
    let got = 0;
    let killed = false;
    const c: Client = client(`/v1/sockets/${id}/stream?binary=true&offset=${offset}`, {
      onBinary: (b) => {
        if (killed) return;
        parts.push(b);
        got += b.length;
        if (got >= killAt) {
          killed = true;
          c.ws.terminate();
        }
      },
    });
    await c.opened;
    await until(() => killed, 'kill point', 10_000);
    await c.closed;
    expect(c.events.filter((e) => e.type === 'error')).toEqual([]);
    return parts;
  }

  it('a consumer killed mid-stream resumes from the bytes it had; the reassembled stream matches (random kill points)', async () => {
    await boot();
    for (let round = 0; round < 3; round++) {
      const { id, peer } = await session();
      const sent = randomBytes(6 * MiB + randomInt(1, 4096));
      peer.write(sent);
      const parts: Buffer[] = [];
      let have = 0;
      const kills = Array.from({ length: 3 }, () => randomInt(1, sent.length - 1)).sort((a, b) => a - b);
      for (const k of kills) {
        if (k <= have) continue;
        const got = await readUntilKilled(id, have, k - have);
        for (const b of got) parts.push(b);
        have += got.reduce((n, b) => n + b.length, 0);
      }
      // the last consumer reads to the end, in JSON mode: the first replayed event starts at the offset asked
      await detached(id);
      const c = client(`/v1/sockets/${id}/stream?encoding=base64&offset=${have}`);
      await c.opened;
      peer.end();
      await eventOf(c, 'eof', 'eof', 10_000);
      const data = c.events.filter((e) => e.type === 'data');
      // the frame that crossed the last kill point may have carried the final bytes: then only eof is left
      if (have < sent.length) expect(data[0]?.offset).toBe(have);
      else expect(data).toEqual([]);
      let off = have;
      for (const e of data) {
        expect(e.offset).toBe(off);
        const b = Buffer.from(e.data, 'base64');
        parts.push(b);
        off += b.length;
      }
      expect(off).toBe(sent.length);
      expect(sha256(Buffer.concat(parts))).toBe(sha256(sent));
      expect(c.events.find((e) => e.type === 'eof').offset).toBe(sent.length);
      c.ws.close(1000);
      await c.closed;
      expect((await t!.call('DELETE', `/v1/sockets/${id}`)).status).toBe(200);
    }
  });

  it('short reads are retained joined: a resume from inside them replays exactly the bytes from there', async () => {
    await boot();
    const { id, peer } = await session();
    const c1 = client(`/v1/sockets/${id}/stream?binary=true`);
    await c1.opened;
    // one read each (every write waits until it arrived): 150 short ones, a long one, 150 short ones
    const parts = [
      ...Array.from({ length: 150 }, (_, i) => randomBytes(1 + (i % 40))),
      randomBytes(20_000),
      ...Array.from({ length: 150 }, (_, i) => randomBytes(1 + ((i * 7) % 40))),
    ];
    let total = 0;
    for (const p of parts) {
      peer.write(p);
      total += p.length;
      await until(() => c1.binBytes >= total, 'the write arrived');
    }
    const sent = Buffer.concat(parts);
    expect(sha256(Buffer.concat(c1.chunks))).toBe(sha256(sent));
    c1.ws.close(1000);
    await c1.closed;
    for (const from of [0, 1234, 3000 + 20_000 + 17, total - 1]) {
      await detached(id);
      const c = client(`/v1/sockets/${id}/stream?binary=true&offset=${from}`);
      await c.opened;
      await until(() => c.binBytes >= total - from, `replay from ${from}`);
      expect(c.events.filter((e) => e.type === 'error')).toEqual([]);
      expect(sha256(Buffer.concat(c.chunks))).toBe(sha256(sent.subarray(from)));
      c.ws.close(1000);
      await c.closed;
    }
  });

  it('an offset beyond retention gets SOCKCTL_OFFSET_EXPIRED before data resumes', async () => {
    await boot({ streamRetainBytes: 65536 });
    const { id, peer } = await session();
    const first = randomBytes(1 * MiB);
    const c1 = client(`/v1/sockets/${id}/stream?binary=true`);
    await c1.opened;
    peer.write(first);
    await until(() => c1.binBytes === first.length, 'first MiB');
    c1.ws.terminate();
    await c1.closed;

    await detached(id);
    const c2 = client(`/v1/sockets/${id}/stream?binary=true&offset=0`);
    await c2.opened;
    await until(() => c2.order.length > 0, 'first frame');
    const err = c2.events[0];
    expect(c2.order[0]).toBe('error');
    expect(err).toMatchObject({ type: 'error', code: 'SOCKCTL_OFFSET_EXPIRED', socket: id });
    const start: number = err.offset;
    expect(start).toBeGreaterThan(0);
    expect(start).toBeGreaterThanOrEqual(first.length - 65536 - 256 * 1024);
    expect(start).toBeLessThanOrEqual(first.length);
    const more = randomBytes(100 * 1024);
    peer.end(more);
    await eventOf(c2, 'eof');
    const all = Buffer.concat([first, more]);
    expect(sha256(Buffer.concat(c2.chunks))).toBe(sha256(all.subarray(start)));
    c2.ws.close(1000);
    await c2.closed;
  });

  // A user's retained bytes are bounded across all their streams (bufferBytes): the stream that goes over
  // gives up its own oldest bytes, and a resume from before them says so.
  it("bounds a user's retention across streams (bufferBytes)", async () => {
    await boot({ streamRetainBytes: 1024 * 1024, userBufferBytes: 256 * 1024 });
    const a = await session();
    const b = await session();
    const ca = client(`/v1/sockets/${a.id}/stream?binary=true`);
    const cb = client(`/v1/sockets/${b.id}/stream?binary=true`);
    await Promise.all([ca.opened, cb.opened]);
    a.peer.write(randomBytes(200 * 1024));
    await until(() => ca.binBytes === 200 * 1024, 'a: 200 KiB');
    b.peer.write(randomBytes(200 * 1024));
    await until(() => cb.binBytes === 200 * 1024, 'b: 200 KiB');
    for (const c of [ca, cb]) {
      c.ws.terminate();
      await c.closed;
    }
    // a kept all of its window; b dropped its oldest bytes to keep the user's total within 256 KiB
    await detached(a.id);
    const ra = client(`/v1/sockets/${a.id}/stream?binary=true&offset=0`);
    await until(() => ra.binBytes === 200 * 1024, 'a replayed in full');
    expect(ra.events.filter((e) => e.type === 'error')).toEqual([]);
    await detached(b.id);
    const rb = client(`/v1/sockets/${b.id}/stream?binary=true&offset=0`);
    await until(() => rb.order.length > 0, 'b: first frame');
    expect(rb.events[0]).toMatchObject({ type: 'error', code: 'SOCKCTL_OFFSET_EXPIRED' });
    expect(rb.events[0].offset).toBeGreaterThanOrEqual(200 * 1024 - (256 * 1024 - 200 * 1024) - 256 * 1024);
    expect(rb.events[0].offset).toBeGreaterThan(0);
  });

  // Bytes a REST recv took (no consumer attached) are not retained: a resume from before them must say so
  // rather than skip them silently (a binary client could not tell).
  it('a resume across bytes read by REST recv gets SOCKCTL_OFFSET_EXPIRED, not a silent hole', async () => {
    await boot();
    const { id, peer } = await session();
    const c1 = client(`/v1/sockets/${id}/stream`);
    await c1.opened;
    peer.write('aaaa');
    await eventOf(c1, 'data');
    c1.ws.close(1000);
    await c1.closed;
    await detached(id);
    peer.write('bbbb');
    const r = await t!.call('POST', `/v1/sockets/${id}/recv`, { timeoutMs: 2000, waitAll: true, maxBytes: 4 });
    expect(r.body).toMatchObject({ data: 'bbbb', bytes: 4 });
    const c2 = client(`/v1/sockets/${id}/stream?offset=8`);
    await c2.opened;
    peer.write('cccc');
    expect(await eventOf(c2, 'data')).toMatchObject({ offset: 8, data: 'cccc' });
    c2.ws.close(1000);
    await c2.closed;
    await detached(id);

    const c3 = client(`/v1/sockets/${id}/stream?offset=0`);
    await c3.opened;
    await until(() => c3.events.length >= 2, 'error and replay');
    expect(c3.events[0]).toMatchObject({ type: 'error', code: 'SOCKCTL_OFFSET_EXPIRED', offset: 8 });
    expect(c3.events[1]).toMatchObject({ type: 'data', offset: 8, data: 'cccc', replay: true });
    c3.ws.close(1000);
    await c3.closed;
  });

  it('an offset past what was received gets SOCKCTL_BAD_OFFSET', async () => {
    await boot();
    const { id, peer } = await session();
    const c = client(`/v1/sockets/${id}/stream?offset=100`);
    await c.opened;
    expect(await eventOf(c, 'error')).toMatchObject({ code: 'SOCKCTL_BAD_OFFSET' });
    peer.write('abc');
    expect(await eventOf(c, 'data')).toMatchObject({ offset: 0, data: 'abc' });
    c.ws.close(1000);
    await c.closed;
  });
});

describe('WebSocket liveness', () => {
  it('a client that does not answer pings is dropped within ~1 s; a normal client stays', async () => {
    await boot({ wsPingMs: 200 });
    const { id } = await session();
    let pings = 0;
    const normal = client(`/v1/sockets/${id}/stream`);
    normal.ws.on('ping', () => pings++);
    const mute = client('/v1/events', { ws: { autoPong: false } });
    await Promise.all([normal.opened, mute.opened]);
    const opened = Date.now();
    const dropped = await mute.closed;
    const after = Date.now() - opened;
    expect(dropped.code).toBe(1006); // terminated, no close frame
    expect(after).toBeLessThan(1000);
    await until(() => pings >= 6, '6 pings to the normal client', 3000);
    expect(normal.ws.readyState).toBe(WebSocket.OPEN);
    normal.ws.close(1000);
    await normal.closed;
    console.log(`[liveness] mute client dropped after ${after} ms`);
  });
});

describe('consumer stream: datagram sockets', () => {
  interface UdpSession {
    id: string;
    c: Client;
    /** The peer's address, as the service names a datagram's sender. */
    from: { address: string; port: number };
    send: (m: Buffer) => Promise<void>;
  }

  /** A bound UDP socket in the service with a consumer stream (`query`), and a udp4 peer that sends it datagrams. */
  async function udpSession(query = ''): Promise<UdpSession> {
    await boot();
    const s = (await t!.call('POST', '/v1/sockets', { family: 'inet', type: 'dgram' })).body;
    const bound = (await t!.call('POST', `/v1/sockets/${s.id}/bind`, { address: '127.0.0.1', port: 0 })).body;
    const c = client(`/v1/sockets/${s.id}/stream${query}`);
    await c.opened;
    const peer = dgram.createSocket('udp4');
    udpPeers.push(peer);
    await new Promise<void>((r) => peer.bind(0, '127.0.0.1', () => r()));
    const send = (m: Buffer) => new Promise<void>((r) => peer.send(m, bound.local.port, '127.0.0.1', () => r()));
    return { id: s.id, c, from: { address: '127.0.0.1', port: peer.address().port }, send };
  }

  // each datagram is one data event naming its sender; a zero-length datagram is data too
  it('reports the sender and truncation of each datagram', async () => {
    const { c, from, send } = await udpSession();
    for (const m of ['one', '', 'three']) await send(Buffer.from(m));
    await until(() => c.events.filter((e) => e.type === 'data').length === 3, 'three datagrams');
    const data = c.events.filter((e) => e.type === 'data');
    expect(data.map((e) => [e.data, e.bytes, e.from, e.truncated])).toEqual([
      ['one', 3, from, false],
      ['', 0, from, false],
      ['three', 5, from, false],
    ]);
    expect(c.events.some((e) => e.type === 'eof')).toBe(false);
  });

  it('a resume replays each retained datagram as one frame of its own (short ones are not joined)', async () => {
    const { id, c: c1, send } = await udpSession('?binary=true');
    const sent = [10, 20, 30].map((n) => randomBytes(n));
    for (const m of sent) await send(m);
    await until(() => c1.chunks.length === 3, 'three frames');
    c1.ws.close(1000);
    await c1.closed;
    await until(() => t!.app.registry.find(id)?.consumer === null, 'consumer detached');
    const c2 = client(`/v1/sockets/${id}/stream?binary=true&offset=0`);
    await c2.opened;
    await until(() => c2.chunks.length === 3, 'three replayed frames');
    expect(c2.chunks.map(sha256)).toEqual(sent.map(sha256));
  });

  it('with ?binary=true a datagram is one binary frame, however large (a stream is cut into frames of 16 KiB)', async () => {
    const { c, send } = await udpSession('?binary=true');
    const sizes = [40_000, 16 * 1024 + 1, 3];
    const sent = sizes.map((n) => randomBytes(n));
    for (const m of sent) await send(m);
    await until(() => c.chunks.length === sizes.length, 'three binary frames');
    expect(c.chunks.map((f) => f.length)).toEqual(sizes);
    expect(c.chunks.map(sha256)).toEqual(sent.map(sha256));
  });
});


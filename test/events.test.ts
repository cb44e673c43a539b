// Observers (DESIGN.md section 5): GET /v1/events over WebSocket and server-sent events, against a listening
// app. A TCP session driven over HTTP is seen in seq order by both; replay with ?after= and Last-Event-ID;
// filters ?socket= and ?label=; ?data=true copies; a stalled observer gets a gap without slowing anything;
// clients are closed with 1001 at shutdown.
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import type { Config } from '../src/config.js';
import { startApp, TOKEN, until, type TestApp } from './helpers.js';

let t: TestApp | undefined;
let port = 0;
const sockets: WebSocket[] = [];
const requests: http.ClientRequest[] = [];
const servers: net.Server[] = [];
const peers: net.Socket[] = [];

async function boot(overrides: Partial<Config> = {}): Promise<TestApp> {
  t = await startApp(overrides);
  await t.app.listen({ host: '127.0.0.1', port: 0 });
  port = (t.app.server.address() as net.AddressInfo).port;
  return t;
}

afterEach(async () => {
  for (const ws of sockets.splice(0)) if (ws.readyState !== WebSocket.CLOSED) ws.terminate();
  for (const r of requests.splice(0)) r.destroy();
  for (const p of peers.splice(0)) p.destroy();
  for (const s of servers.splice(0)) s.close();
  await t?.close();
  t = undefined;
});

interface Observer {
  events: any[];
  /** Each frame as it came: events are text frames. */
  frames: { text: boolean; data: Buffer }[];
  opened: Promise<void>;
  closed: Promise<{ code: number; reason: string }>;
  ws: WebSocket;
}

/** A WebSocket observer on /v1/events (token in the query). */
function wsObserver(query = ''): Observer {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/events?token=${TOKEN}${query ? `&${query}` : ''}`);
  sockets.push(ws);
  const o: Observer = { ws, events: [], frames: [], opened: once(ws, 'open').then(() => undefined), closed: undefined as any };
  o.closed = new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  ws.on('error', () => undefined);
  ws.on('message', (data: Buffer, isBinary) => {
    o.frames.push({ text: !isBinary, data });
    o.events.push(isBinary ? { type: 'a binary frame' } : JSON.parse(data.toString()));
  });
  return o;
}

interface SseClient {
  /** Parsed events; `id` and `event` are the SSE fields, checked against the JSON. */
  events: any[];
  ids: number[];
  names: string[];
  status: Promise<number>;
  ended: Promise<void>;
  req: http.ClientRequest;
  res?: http.IncomingMessage;
}

/** A server-sent events client (node:http), Authorization header, optional extra headers. */
function sseObserver(query = '', headers: Record<string, string> = {}, opts: { paused?: boolean } = {}): SseClient {
  const c: SseClient = { events: [], ids: [], names: [], status: undefined as any, ended: undefined as any, req: undefined as any };
  let resolveEnded!: () => void;
  c.ended = new Promise((r) => (resolveEnded = r));
  c.status = new Promise((resolve, reject) => {
    c.req = http.get(
      {
        host: '127.0.0.1',
        port,
        path: `/v1/events${query ? `?${query}` : ''}`,
        headers: { accept: 'text/event-stream', authorization: `Bearer ${TOKEN}`, ...headers },
      },
      (res) => {
        c.res = res;
        if (opts.paused) res.pause();
        resolve(res.statusCode ?? 0);
        res.setEncoding('utf8');
        let buf = '';
        res.on('data', (chunk: string) => {
          buf += chunk;
          for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            let id: number | undefined;
            let name: string | undefined;
            const data: string[] = [];
            for (const line of block.split('\n')) {
              if (line.startsWith(':')) continue; // comment (keep-alive)
              const [field, ...rest] = line.split(':');
              const value = rest.join(':').replace(/^ /, '');
              if (field === 'id') id = Number(value);
              else if (field === 'event') name = value;
              else if (field === 'data') data.push(value);
            }
            if (data.length === 0) continue;
            c.events.push(JSON.parse(data.join('\n')));
            c.ids.push(id ?? NaN);
            c.names.push(name ?? '');
          }
        });
        res.on('end', resolveEnded);
        res.on('close', resolveEnded);
      },
    );
    c.req.on('error', reject);
  });
  c.status.catch(() => undefined);
  requests.push(c.req);
  return c;
}

const post = async (url: string, body: object = {}, expected = 200) => {
  const r = await t!.call('POST', url, body);
  expect(r.status, `${url}: ${JSON.stringify(r.body)}`).toBe(expected);
  return r.body;
};

/** The classic TCP session over HTTP; returns the ids and the first seq it produced. */
async function tcpSession(label = 'lab'): Promise<{ L: string; C: string; A: string }> {
  const L = (await post('/v1/sockets', { family: 'inet', type: 'stream', label }, 201)).id;
  await post(`/v1/sockets/${L}/bind`, { address: '127.0.0.1', port: 0 });
  const { local } = await post(`/v1/sockets/${L}/listen`, { backlog: 4 });
  const C = (await post('/v1/sockets', { family: 'inet', type: 'stream', label }, 201)).id;
  await post(`/v1/sockets/${C}/connect`, local);
  const A = (await post(`/v1/sockets/${L}/accept`, { timeoutMs: 2000 }, 201)).id;
  expect(await post(`/v1/sockets/${C}/send`, { data: 'hello' })).toEqual({ bytes: 5 });
  expect(await post(`/v1/sockets/${A}/recv`, { timeoutMs: 2000, waitAll: true, maxBytes: 5 })).toMatchObject({ data: 'hello', eof: false });
  await post(`/v1/sockets/${C}/shutdown`, { how: 'SHUT_WR' });
  expect(await post(`/v1/sockets/${A}/recv`, { timeoutMs: 2000 })).toMatchObject({ bytes: 0, eof: true });
  for (const id of [A, C, L]) expect((await t!.call('DELETE', `/v1/sockets/${id}`)).status).toBe(200);
  return { L, C, A };
}

const KNOWN = new Set(['created', 'state', 'accepted', 'data', 'sent', 'eof', 'shutdown', 'error', 'closed', 'gap', 'pending', 'dropped']);

/** The session as short names: "L:created", "L:state:bound", ... (a connect's transient "connecting" dropped). */
function signature(events: any[], ids: Record<string, string>): string[] {
  const name = Object.fromEntries(Object.entries(ids).map(([k, v]) => [v, k]));
  return events
    .filter((e) => KNOWN.has(e.type) && e.type !== 'pending')
    .filter((e) => !(e.type === 'state' && e.state === 'connecting'))
    .map((e) => [name[e.socket] ?? e.socket, e.type, ...(e.type === 'state' ? [e.state] : [])].join(':'));
}

const SESSION = [
  'L:created',
  'L:state:bound',
  'L:state:listening',
  'C:created',
  'C:state:connected',
  'A:created',
  'L:accepted',
  'C:sent',
  'A:data',
  'C:shutdown',
  'A:eof',
  'A:state:closed',
  'A:closed',
  'C:state:closed',
  'C:closed',
  'L:state:closed',
  'L:closed',
];

function expectIncreasing(events: any[]): void {
  for (let i = 1; i < events.length; i++) expect(events[i].seq, `event ${i} (${events[i].type})`).toBeGreaterThan(events[i - 1].seq);
}

describe('observers: a TCP session over HTTP', () => {
  it('an SSE client and a WebSocket observer see the session in seq order; ?after= and Last-Event-ID replay it', async () => {
    await boot();
    const ws = wsObserver();
    const sse = sseObserver();
    await ws.opened;
    expect(await sse.status).toBe(200);
    await until(() => t!.app.events.subscribers >= 2, 'both observers subscribed');
    const ids = await tcpSession();
    await until(() => ws.events.length >= SESSION.length && sse.events.length >= SESSION.length, 'all session events');
    expect(signature(ws.events, ids)).toEqual(SESSION);
    expect(signature(sse.events, ids)).toEqual(SESSION);
    expectIncreasing(ws.events);
    // both transports carry the same events, and SSE labels each with its seq and type
    expect(sse.events).toEqual(ws.events);
    expect(sse.ids).toEqual(sse.events.map((e) => e.seq));
    expect(sse.names).toEqual(sse.events.map((e) => e.type));
    // details
    const byType = (ty: string) => ws.events.find((e) => e.type === ty);
    expect(byType('accepted')).toMatchObject({ socket: ids.L, child: ids.A, remote: { address: '127.0.0.1' } });
    expect(byType('sent')).toMatchObject({ socket: ids.C, offset: 0, bytes: 5 });
    expect(byType('data')).toMatchObject({ socket: ids.A, offset: 0, bytes: 5 });
    expect(byType('sent').data).toBeUndefined(); // copies only with ?data=true
    expect(byType('data').data).toBeUndefined();
    expect(byType('eof')).toMatchObject({ socket: ids.A, offset: 5 });
    expect(byType('shutdown')).toMatchObject({ socket: ids.C, how: 'SHUT_WR' });
    expect(byType('created')).toMatchObject({ socket: ids.L, family: 'AF_INET', socketType: 'SOCK_STREAM', label: 'lab' });
    for (const e of ws.events) expect(Date.parse(e.ts)).not.toBeNaN();

    // replay: everything after the seq before the first event, again, over both transports
    const before = ws.events[0].seq - 1;
    const replayWs = wsObserver(`after=${before}`);
    const replaySse = sseObserver('', { 'last-event-id': String(before) });
    const replaySseQuery = sseObserver(`after=${before}`);
    await until(
      () => [replayWs, replaySse, replaySseQuery].every((o) => o.events.length >= ws.events.length),
      'replayed events',
    );
    expect(replayWs.events).toEqual(ws.events);
    expect(replaySse.events).toEqual(ws.events);
    expect(replaySseQuery.events).toEqual(ws.events);
    // replay from the middle: exactly the tail
    const mid = ws.events[7].seq;
    const tail = wsObserver(`after=${mid}`);
    await until(() => tail.events.length >= ws.events.length - 8, 'tail replay');
    expect(tail.events).toEqual(ws.events.slice(8));

    // and replayed observers go live afterwards
    const extra = (await post('/v1/sockets', { family: 'inet', type: 'dgram' }, 201)).id;
    for (const o of [ws, replayWs, replaySse, replaySseQuery, tail])
      expect(await until(() => o.events.find((e) => e.socket === extra), 'live after replay')).toMatchObject({ type: 'created' });

    ws.ws.close(1000);
    expect((await ws.closed).code).toBe(1000);
    sse.req.destroy();
    await sse.ended;
  });

  it('every WebSocket observer gets each event as a text frame, byte for byte the same', async () => {
    await boot();
    const [a, b] = [wsObserver(), wsObserver()];
    await Promise.all([a.opened, b.opened]);
    await until(() => t!.app.events.subscribers >= 2, 'both observers subscribed');
    await tcpSession('same-bytes');
    await until(() => a.events.some((e) => e.type === 'closed') && a.events.length === b.events.length && b.events.at(-1)?.seq === a.events.at(-1)?.seq, 'both observers to see the whole session');
    expect(a.frames.length).toBeGreaterThan(10);
    expect(a.frames.every((f) => f.text)).toBe(true);
    expect(b.frames.map((f) => f.data.toString())).toEqual(a.frames.map((f) => f.data.toString()));
  });

  it('?socket= and ?label= filter; ?data=true adds copies of the bytes in and out', async () => {
    await boot();
    const labelled = wsObserver('label=lab');
    const withData = wsObserver('data=true');
    const base64 = sseObserver('data=true&encoding=base64');
    await Promise.all([labelled.opened, withData.opened, base64.status]);
    await until(() => t!.app.events.subscribers >= 3, 'observers subscribed');
    // an unrelated socket, with another label, before and during the session
    const other = (await post('/v1/sockets', { family: 'inet', type: 'dgram', label: 'other' }, 201)).id;
    const ids = await tcpSession('lab');
    await post(`/v1/sockets/${other}/bind`, { address: '127.0.0.1', port: 0 });

    await until(() => labelled.events.length >= SESSION.length, 'labelled events');
    await until(() => withData.events.find((e) => e.socket === other && e.type === 'state'), 'last event (data)');
    await until(() => base64.events.find((e) => e.socket === other && e.type === 'state'), 'last event (sse)');
    expect(signature(labelled.events, ids)).toEqual(SESSION);
    expect(labelled.events.every((e) => e.socket !== other)).toBe(true);

    expect(withData.events.find((e) => e.type === 'sent')).toMatchObject({ socket: ids.C, bytes: 5, data: 'hello', encoding: 'utf8' });
    expect(withData.events.find((e) => e.type === 'data')).toMatchObject({ socket: ids.A, bytes: 5, data: 'hello', encoding: 'utf8' });
    expect(base64.events.find((e) => e.type === 'sent')).toMatchObject({ data: 'aGVsbG8=', encoding: 'base64' });
    expect(base64.events.find((e) => e.type === 'data')).toMatchObject({ data: 'aGVsbG8=', encoding: 'base64' });
    // copies only on data/sent events
    expect(withData.events.filter((e) => e.data !== undefined).map((e) => e.type).sort()).toEqual(['data', 'sent']);
    expect(withData.events.some((e) => e.socket === other)).toBe(true);

    // ?socket= (replayed from the log, then live)
    const onlyA = wsObserver(`socket=${ids.A}&after=0`);
    const onlyL = sseObserver(`socket=${ids.L}&after=0`);
    await until(() => onlyA.events.length >= 5 && onlyL.events.length >= 6, 'filtered replay');
    expect(signature(onlyA.events, ids)).toEqual(['A:created', 'A:data', 'A:eof', 'A:state:closed', 'A:closed']);
    expect(signature(onlyL.events, ids)).toEqual(['L:created', 'L:state:bound', 'L:state:listening', 'L:accepted', 'L:state:closed', 'L:closed']);
    // a label filter replays too, and excludes the other label
    const otherLabel = wsObserver('label=other&after=0');
    await until(() => otherLabel.events.length >= 2, 'other label replay');
    expect(otherLabel.events.map((e) => [e.socket, e.type, e.state])).toEqual([
      [other, 'created', 'created'],
      [other, 'state', 'bound'],
    ]);
    // nothing else arrives for the filters (a later event on another socket is the fence)
    const fence = (await post('/v1/sockets', { family: 'inet', type: 'dgram' }, 201)).id;
    await until(() => withData.events.find((e) => e.socket === fence), 'fence');
    expect(onlyA.events).toHaveLength(5);
    expect(onlyL.events).toHaveLength(6);
    expect(otherLabel.events).toHaveLength(2);
  });

  it('bad queries are refused: 400 for SSE, a close for WebSocket; no token is 401', async () => {
    await boot();
    const bad = sseObserver('after=-1');
    expect(await bad.status).toBe(400);
    const noToken = await new Promise<number>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, path: '/v1/events', headers: { accept: 'text/event-stream' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      requests.push(req);
      req.on('error', reject);
    });
    expect(noToken).toBe(401);
    // a plain GET (neither WebSocket nor SSE) is a 400
    expect((await t!.call('GET', '/v1/events')).status).toBe(400);
  });
});

describe('observers: a slow observer', () => {
  // The observer's transport is paused (it reads nothing), the producer sends 300 x 64 KiB through a TCP
  // socket and the observer asked for copies (?data=true, base64): ~26 MB of events, far beyond the kernel's
  // buffers, the 1 MiB the service lets a WebSocket hold, and the queue of 50 events.
  for (const transport of ['websocket', 'sse'] as const) {
    it(`${transport}: gets a gap event with missed > 0 once it resumes; the producer is not slowed; nothing is lost silently`, async () => {
      await boot({ observerQueue: 50 });
      let events: any[];
      let resume: () => void;
      let serverWs: WebSocket | undefined;
      if (transport === 'websocket') {
        const slow = wsObserver('data=true&encoding=base64');
        await slow.opened;
        slow.ws.pause();
        events = slow.events;
        resume = () => slow.ws.resume();
        serverWs = [...t!.app.websocketServer.clients][0]!;
      } else {
        const slow = sseObserver('data=true&encoding=base64', {}, { paused: true });
        expect(await slow.status).toBe(200);
        events = slow.events;
        resume = () => slow.res!.resume();
      }
      await until(() => t!.app.events.subscribers >= 1, 'observer subscribed');
      const firstSeq = t!.app.events.headSeq;

      // a TCP peer that discards what it gets
      const sink = net.createServer((s) => {
        peers.push(s);
        s.resume();
      });
      servers.push(sink);
      sink.listen(0, '127.0.0.1');
      await once(sink, 'listening');
      const id = (await post('/v1/sockets', { family: 'inet', type: 'stream' }, 201)).id;
      await post(`/v1/sockets/${id}/connect`, { address: '127.0.0.1', port: (sink.address() as net.AddressInfo).port });

      const chunk = Buffer.alloc(64 * 1024, 0x5a);
      let maxBuffered = 0;
      const started = Date.now();
      for (let i = 0; i < 300; i++) {
        const r = await t!.call('POST', `/v1/sockets/${id}/send`, chunk, { 'content-type': 'application/octet-stream' });
        expect(r.status).toBe(200);
        expect(r.body).toEqual({ bytes: chunk.length });
        if (serverWs) maxBuffered = Math.max(maxBuffered, serverWs.bufferedAmount);
      }
      const producerMs = Date.now() - started;
      expect((await t!.call('DELETE', `/v1/sockets/${id}`)).status).toBe(200);
      const lastSeq = t!.app.events.headSeq - 1;
      if (serverWs) {
        // the transport held at most its high-water mark (1 MiB) plus one event
        expect(maxBuffered).toBeGreaterThan(1024 * 1024);
        expect(maxBuffered).toBeLessThan(1024 * 1024 + 128 * 1024);
      }

      resume();
      await until(() => events.find((e) => e.seq === lastSeq), 'the last event after resuming', 10_000);
      const gaps = events.filter((e) => e.type === 'gap');
      expect(gaps.length).toBeGreaterThan(0);
      for (const g of gaps) expect(g).toMatchObject({ socket: '*', missed: expect.any(Number) });
      const missed = gaps.reduce((n, g) => n + g.missed, 0);
      expect(missed).toBeGreaterThan(0);
      expectIncreasing(events);
      // every event since the observer started was either delivered or counted as missed
      const delivered = events.filter((e) => e.type !== 'gap' && e.seq >= firstSeq && e.seq <= lastSeq).length;
      expect(delivered + missed).toBe(lastSeq - firstSeq + 1);
      // the newest events survived (the queue drops the oldest): the last 50 are all there
      const seqs = new Set(events.map((e) => e.seq));
      for (let s = lastSeq - 49; s <= lastSeq; s++) expect(seqs.has(s), `seq ${s}`).toBe(true);
      console.log(
        `[slow observer, ${transport}] producer: 300 sends of 64 KiB in ${producerMs} ms; observer got ${delivered} events, ` +
          `${gaps.length} gap(s) with missed=${missed}` +
          (serverWs ? `; max transport buffer ${(maxBuffered / 1024).toFixed(0)} KiB` : ''),
      );
    });
  }

  it('a replay from before the ring starts with a gap that counts what the log no longer holds', async () => {
    await boot({ eventLogSize: 16 });
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) ids.push((await post('/v1/sockets', { family: 'inet', type: 'dgram' }, 201)).id); // 10 events
    for (const id of ids) expect((await t!.call('DELETE', `/v1/sockets/${id}`)).status).toBe(200); // 20 more
    const head = t!.app.events.headSeq; // 31
    expect(head).toBe(31);
    const o = wsObserver('after=0');
    const s = sseObserver('after=0');
    await until(() => o.events.length >= 17 && s.events.length >= 17, 'replay');
    for (const events of [o.events, s.events]) {
      expect(events[0]).toMatchObject({ type: 'gap', socket: '*', missed: head - 1 - 16 });
      expect(events.slice(1).map((e) => e.seq)).toEqual(Array.from({ length: 16 }, (_, i) => head - 16 + i));
      expectIncreasing(events);
    }
  });

  it('observers beyond maxObservers are refused (WebSocket 4429, SSE 429)', async () => {
    await boot({ maxObservers: 2 });
    const a = wsObserver();
    const b = sseObserver();
    await a.opened;
    expect(await b.status).toBe(200);
    const c = wsObserver();
    expect((await c.closed).code).toBe(4429);
    const d = sseObserver();
    expect(await d.status).toBe(429);
    // a released slot can be taken again: once the server saw the close, a new observer is admitted and live
    a.ws.close(1000);
    await a.closed;
    await until(() => t!.app.websocketServer.clients.size === 0, 'server saw the closes');
    const e = wsObserver();
    await e.opened;
    const id = (await post('/v1/sockets', { family: 'inet', type: 'dgram' }, 201)).id;
    expect(await until(() => e.events.find((ev) => ev.socket === id), 'live event')).toMatchObject({ type: 'created' });
    expect(e.ws.readyState).toBe(WebSocket.OPEN);
  });
});

describe('observers and consumers at shutdown', () => {
  it('app.close() closes WebSocket clients with 1001 and ends SSE streams', async () => {
    const tt = await boot();
    const app = tt.app;
    const obs = wsObserver();
    const sse = sseObserver();
    await obs.opened;
    expect(await sse.status).toBe(200);
    // a consumer stream on a connected socket
    const sink = net.createServer((s) => peers.push(s));
    servers.push(sink);
    sink.listen(0, '127.0.0.1');
    await once(sink, 'listening');
    const id = (await post('/v1/sockets', { family: 'inet', type: 'stream' }, 201)).id;
    await post(`/v1/sockets/${id}/connect`, { address: '127.0.0.1', port: (sink.address() as net.AddressInfo).port });
    const consumer = new WebSocket(`ws://127.0.0.1:${port}/v1/sockets/${id}/stream`, { headers: { authorization: `Bearer ${TOKEN}` } });
    sockets.push(consumer);
    consumer.on('error', () => undefined);
    const consumerClosed = new Promise<number>((r) => consumer.once('close', (code) => r(code)));
    await once(consumer, 'open');

    t = undefined; // closed here, not in afterEach
    const closing = tt.close();
    expect((await obs.closed).code).toBe(1001);
    expect(await consumerClosed).toBe(1001);
    await sse.ended;
    await closing;
    expect(app.registry.find(id)?.state).toBe('closed');
  });
});

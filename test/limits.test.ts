// Quotas and limits (issue 5): per-user sockets, listeners and connects per second (429 SOCKCTL_QUOTA,
// the service keeps serving), the service's socket ceiling (503 EMFILE), idle timeout and maximum
// lifetime (a `closed` event that says why), load shedding when the event loop lags (503
// SOCKCTL_OVERLOADED), body size (413), a per-user rate limit (429 SOCKCTL_RATE_LIMITED), the Host header
// against DNS rebinding, Origin on WebSocket/SSE handshakes, the CORS allowlist, security headers, observers
// per user (4429) and the WebSocket message size (1009).
import { once } from 'node:events';
import http from 'node:http';
import type net from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { WebSocket } from 'ws';
import type { Config } from '../src/config.js';
import { startApp, TOKEN, until, type Reply, type TestApp } from './helpers.js';

const ALICE = 'alice-token-0123456789abcdef';
const BOB = 'bob-token-0123456789abcdefgh';
const tokens = (aliceLimits: object = {}) => ({
  users: [
    { name: 'alice', token: ALICE, role: 'user', limits: aliceLimits },
    { name: 'bob', token: BOB, role: 'user' },
  ],
});

let t: TestApp | undefined;
let port = 0;
const clients: WebSocket[] = [];
const requests: http.ClientRequest[] = [];

afterEach(async () => {
  for (const ws of clients.splice(0)) ws.terminate();
  for (const r of requests.splice(0)) r.destroy();
  await t?.close();
  t = undefined;
});

async function boot(overrides: Partial<Config> = {}, files: { tokens?: unknown; policy?: unknown } = {}, listen = false): Promise<TestApp> {
  t = await startApp(overrides, files);
  if (listen) {
    await t.app.listen({ host: '127.0.0.1', port: 0 });
    port = (t.app.server.address() as net.AddressInfo).port;
  }
  return t;
}

async function call(token: string | null, method: string, url: string, body?: unknown, headers: Record<string, string> = {}): Promise<Reply<any>> {
  const r = await t!.app.inject({
    method: method as any,
    url,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
    ...(body === undefined ? {} : Buffer.isBuffer(body) || typeof body === 'string' ? { payload: body } : { payload: body as object }),
  });
  const type = String(r.headers['content-type'] ?? '');
  return { status: r.statusCode, body: type.includes('json') && r.body ? JSON.parse(r.body) : r.body, raw: r.rawPayload, headers: r.headers };
}

const createBody = { family: 'inet', type: 'stream' };
const create = (token: string, body: object = createBody) => call(token, 'POST', '/v1/sockets', body);

async function expectHealthy(): Promise<void> {
  const h = await call(null, 'GET', '/v1/health');
  expect(h.status).toBe(200);
  expect(h.body.status).toBe('ok');
}

/** A loopback listener owned by `token`: its address. */
async function listener(token: string): Promise<{ id: string; local: { address: string; port: number } }> {
  const s = (await create(token)).body;
  expect((await call(token, 'POST', `/v1/sockets/${s.id}/bind`, { address: '127.0.0.1', port: 0 })).status).toBe(200);
  const l = await call(token, 'POST', `/v1/sockets/${s.id}/listen`, { backlog: 16 });
  expect(l.status, JSON.stringify(l.body)).toBe(200);
  return l.body;
}

/** A WebSocket handshake: its refusal status, or the close code once the server (or `holdMs`) ends it. */
function handshake(url: string, opts: { origin?: string; headers?: Record<string, string>; holdMs?: number } = {}) {
  return new Promise<{ status?: number; body?: any; opened: boolean; code?: number; ws: WebSocket }>((resolve, reject) => {
    const ws = new WebSocket(url, { headers: opts.headers ?? {}, ...(opts.origin ? { origin: opts.origin } : {}) });
    clients.push(ws);
    let opened = false;
    ws.on('unexpected-response', (req, res) => {
      let text = '';
      res.on('data', (c) => (text += String(c)));
      res.on('end', () => {
        req.destroy();
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {
          // not JSON
        }
        resolve({ status: res.statusCode, body, opened, ws });
      });
    });
    ws.on('open', () => {
      opened = true;
      if (opts.holdMs !== undefined) setTimeout(() => resolve({ opened, ws }), opts.holdMs);
    });
    ws.on('close', (code) => resolve({ opened, code, ws }));
    ws.on('error', (e) => {
      if (!opened) reject(e);
    });
  });
}

describe('per-user quotas', () => {
  it('sockets: the 4th of a limit of 3 is 429 SOCKCTL_QUOTA; the service, and other users, go on; closing one frees a place', async () => {
    await boot({}, { tokens: tokens({ sockets: 3 }) });
    const mine: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await create(ALICE);
      expect(r.status).toBe(201);
      mine.push(r.body.id);
    }
    const over = await create(ALICE);
    expect(over.status).toBe(429);
    expect(over.body).toMatchObject({ statusCode: 429, error: 'Too Many Requests', code: 'SOCKCTL_QUOTA' });
    expect(over.body.message).toMatch(/alice.*3/);
    expect(over.body.errno).toBeUndefined();
    // a socketpair needs two places, and a Unix socket counts like any other
    expect((await call(ALICE, 'POST', '/v1/socketpairs', { type: 'stream' })).status).toBe(429);
    expect((await create(ALICE, { family: 'unix', type: 'dgram' })).status).toBe(429);
    await expectHealthy();
    expect((await call(ALICE, 'GET', '/v1/sockets')).status).toBe(200);
    expect((await create(BOB)).status).toBe(201);
    expect((await create(TOKEN)).status).toBe(201);
    // closing one gives the place back; closed sockets that stay readable do not count
    expect((await call(ALICE, 'DELETE', `/v1/sockets/${mine[0]}`)).status).toBe(200);
    expect((await create(ALICE)).status).toBe(201);
    expect((await create(ALICE)).status).toBe(429);
    expect(t!.app.registry.list({ owner: 'alice' }).filter((s) => s.isOpen)).toHaveLength(3);
  });

  it('an accept beyond the socket quota is 429, and the listener goes on accepting once there is room', async () => {
    await boot({}, { tokens: tokens({ sockets: 2 }) });
    const L = await listener(ALICE);
    const c1 = (await create(BOB)).body;
    const c2 = (await create(BOB)).body;
    expect((await call(BOB, 'POST', `/v1/sockets/${c1.id}/connect`, L.local)).status).toBe(200);
    expect((await call(BOB, 'POST', `/v1/sockets/${c2.id}/connect`, L.local)).status).toBe(200);
    const a1 = await call(ALICE, 'POST', `/v1/sockets/${L.id}/accept`, { timeoutMs: 2000 });
    expect(a1.status).toBe(201);
    const a2 = await call(ALICE, 'POST', `/v1/sockets/${L.id}/accept`, { timeoutMs: 2000 });
    expect(a2.status).toBe(429);
    expect(a2.body.code).toBe('SOCKCTL_QUOTA');
    expect(t!.app.registry.list({ owner: 'alice' }).filter((s) => s.isOpen)).toHaveLength(2);
    await call(ALICE, 'DELETE', `/v1/sockets/${a1.body.id}`);
    const c3 = (await create(BOB)).body;
    expect((await call(BOB, 'POST', `/v1/sockets/${c3.id}/connect`, L.local)).status).toBe(200);
    expect((await call(ALICE, 'POST', `/v1/sockets/${L.id}/accept`, { timeoutMs: 2000 })).status).toBe(201);
    await expectHealthy();
  });

  it('listeners: a second listen over a limit of 1 is 429; the socket stays as it was; closing the first frees it', async () => {
    await boot({}, { tokens: tokens({ listeners: 1 }) });
    const first = await listener(ALICE);
    const s = (await create(ALICE)).body;
    expect((await call(ALICE, 'POST', `/v1/sockets/${s.id}/bind`, { address: '127.0.0.1', port: 0 })).status).toBe(200);
    const r = await call(ALICE, 'POST', `/v1/sockets/${s.id}/listen`, {});
    expect(r.status).toBe(429);
    expect(r.body).toMatchObject({ code: 'SOCKCTL_QUOTA', message: expect.stringMatching(/listen/) });
    const after = (await call(ALICE, 'GET', `/v1/sockets/${s.id}`)).body;
    expect(after.state).toBe('bound');
    expect(after.kernel.tcpState).toBe('CLOSE'); // not LISTEN: listen(2) was not called
    // listen again on the same listener is no new listener
    expect((await call(ALICE, 'POST', `/v1/sockets/${first.id}/listen`, { backlog: 4 })).status).toBe(200);
    // others are not limited by alice's limit
    await listener(BOB);
    await call(ALICE, 'DELETE', `/v1/sockets/${first.id}`);
    expect((await call(ALICE, 'POST', `/v1/sockets/${s.id}/listen`, {})).status).toBe(200);
  });

  it('connectsPerSecond 2: the 3rd and later connects within a second are 429 before any syscall; later ones pass again', async () => {
    await boot({}, { tokens: tokens({ connectsPerSecond: 2 }) });
    const L = await listener(BOB);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await create(ALICE)).body.id);
    const results: number[] = [];
    for (const id of ids) results.push((await call(ALICE, 'POST', `/v1/sockets/${id}/connect`, L.local)).status);
    expect(results).toEqual([200, 200, 429, 429, 429]);
    const refused = await call(ALICE, 'POST', `/v1/sockets/${ids[2]}/connect`, L.local);
    expect(refused.body).toMatchObject({ code: 'SOCKCTL_QUOTA', message: expect.stringMatching(/connect rate/) });
    for (const id of ids.slice(2)) {
      const s = (await call(ALICE, 'GET', `/v1/sockets/${id}`)).body;
      expect(s.state).toBe('created');
      expect(s.local).toBeNull();
      expect(s.kernel.tcpState).toBe('CLOSE');
    }
    // bob's rate is his own
    const b = (await create(BOB)).body;
    expect((await call(BOB, 'POST', `/v1/sockets/${b.id}/connect`, L.local)).status).toBe(200);
    await expectHealthy();
    // a second later the bucket has refilled
    await new Promise((r) => setTimeout(r, 1100));
    expect((await call(ALICE, 'POST', `/v1/sockets/${ids[2]}/connect`, L.local)).status).toBe(200);
    expect((await call(ALICE, 'POST', `/v1/sockets/${ids[3]}/connect`, L.local)).status).toBe(200);
    expect((await call(ALICE, 'POST', `/v1/sockets/${ids[4]}/connect`, L.local)).status).toBe(429);
  });
});

describe('the service ceiling (SOCKCTL_MAX_SOCKETS)', () => {
  it('the 6th socket of a ceiling of 5 is 503 EMFILE (errno 24); health answers; a close makes room', async () => {
    await boot({ maxSockets: 5 }, { tokens: tokens() });
    const ids: string[] = [];
    for (const token of [ALICE, ALICE, BOB, TOKEN, BOB]) {
      const r = await create(token);
      expect(r.status).toBe(201);
      ids.push(r.body.id);
    }
    for (const token of [ALICE, BOB, TOKEN]) {
      const r = await create(token);
      expect(r.status).toBe(503);
      expect(r.body).toMatchObject({ statusCode: 503, error: 'Service Unavailable', code: 'EMFILE', errno: 24, syscall: 'socket' });
      expect(r.body.message).toMatch(/SOCKCTL_MAX_SOCKETS=5/);
    }
    expect((await call(ALICE, 'POST', '/v1/socketpairs', { type: 'dgram' })).status).toBe(503);
    await expectHealthy();
    expect((await call(null, 'GET', '/v1/health')).body.sockets).toBe(5);
    await call(TOKEN, 'DELETE', `/v1/sockets/${ids[0]}`);
    expect((await create(BOB)).status).toBe(201);
    expect((await create(BOB)).status).toBe(503);
  });

  it('an accept over the ceiling is 503 EMFILE and the service goes on', async () => {
    await boot({ maxSockets: 3 });
    const L = await listener(TOKEN);
    const c = (await create(TOKEN)).body;
    expect((await call(TOKEN, 'POST', `/v1/sockets/${c.id}/connect`, L.local)).status).toBe(200);
    const a = await call(TOKEN, 'POST', `/v1/sockets/${L.id}/accept`, { timeoutMs: 2000 });
    expect(a.status).toBe(201);
    const c2 = await create(TOKEN);
    expect(c2.status).toBe(503);
    await expectHealthy();
  });
});

describe('idle timeout and maximum lifetime', () => {
  /** The closed events of the service's log. */
  const closedEvents = () => t!.app.events.since(0).events.filter((e) => e.type === 'closed');

  it('idleTimeoutMs 300 closes an untouched socket with a closed event naming the idle timeout; a used one stays', async () => {
    await boot({ idleTimeoutMs: 300 });
    const idle = (await create(TOKEN)).body;
    const busy = (await create(TOKEN)).body;
    const start = Date.now();
    // keep `busy` in use (a getsockopt is an operation); only read `idle`'s resource, which is not
    const closed = await until(async () => {
      expect((await call(TOKEN, 'GET', `/v1/sockets/${busy.id}/options`)).status).toBe(200);
      const s = (await call(TOKEN, 'GET', `/v1/sockets/${idle.id}`)).body;
      return s.state === 'closed' ? s : undefined;
    }, 'the idle socket closed', 3000);
    expect(Date.now() - start).toBeGreaterThanOrEqual(250);
    expect(closed.closeReason).toMatch(/idle/);
    expect(closed.closeReason).toMatch(/SOCKCTL_IDLE_TIMEOUT_MS/);
    expect(closed.closedAt).not.toBeNull();
    const event = closedEvents().find((e) => e.socket === idle.id);
    expect(event).toMatchObject({ type: 'closed', reason: expect.stringMatching(/idle/) });
    // the stale id answers as a closed socket: EBADF, not a crash
    const r = await call(TOKEN, 'POST', `/v1/sockets/${idle.id}/bind`, { address: '127.0.0.1', port: 0 });
    expect(r.status).toBe(409);
    expect(r.body.code).toBe('EBADF');
    // busy is still open after well over the timeout
    await new Promise((r) => setTimeout(r, 200));
    expect((await call(TOKEN, 'GET', `/v1/sockets/${busy.id}/options`)).status).toBe(200);
    expect((await call(TOKEN, 'GET', `/v1/sockets/${busy.id}`)).body.state).toBe('created');
    expect(closedEvents().some((e) => e.socket === busy.id)).toBe(false);
  });

  it('a socket with a consumer stream attached is not idle', async () => {
    await boot({ idleTimeoutMs: 300 }, {}, true);
    const [a, b] = (await call(TOKEN, 'POST', '/v1/socketpairs', { type: 'stream' })).body.sockets;
    const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/sockets/${a.id}/stream?token=${TOKEN}`);
    clients.push(ws);
    await once(ws, 'open');
    await until(async () => (await call(TOKEN, 'GET', `/v1/sockets/${b.id}`)).body.state === 'closed', 'b idle-closed', 3000);
    expect((await call(TOKEN, 'GET', `/v1/sockets/${a.id}`)).body.state).not.toBe('closed');
  });

  it('maxLifetimeMs 300 closes even a busy socket, with a closed event naming the lifetime', async () => {
    await boot({ maxLifetimeMs: 300 });
    const s = (await create(TOKEN)).body;
    const closed = await until(async () => {
      await call(TOKEN, 'GET', `/v1/sockets/${s.id}/options`);
      const r = (await call(TOKEN, 'GET', `/v1/sockets/${s.id}`)).body;
      return r.state === 'closed' ? r : undefined;
    }, 'the socket closed at its lifetime', 3000);
    expect(closed.closeReason).toMatch(/lifetime/);
    expect(closed.closeReason).toMatch(/SOCKCTL_MAX_LIFETIME_MS/);
    expect(new Date(closed.closedAt).getTime() - new Date(closed.createdAt).getTime()).toBeGreaterThanOrEqual(290);
    expect(closedEvents().find((e) => e.socket === s.id)).toMatchObject({ reason: expect.stringMatching(/lifetime/) });
  });

  it('without the settings nothing is closed behind the user', async () => {
    await boot();
    const s = (await create(TOKEN)).body;
    await new Promise((r) => setTimeout(r, 500));
    expect((await call(TOKEN, 'GET', `/v1/sockets/${s.id}`)).body.state).toBe('created');
  });
});

describe('request and message sizes', () => {
  it('a body over bodyLimit is 413 with the error shape, JSON or raw, and nothing is sent', async () => {
    await boot({ bodyLimit: 1024 });
    const [a, b] = (await call(TOKEN, 'POST', '/v1/socketpairs', { type: 'stream' })).body.sockets;
    const json = await call(TOKEN, 'POST', `/v1/sockets/${a.id}/send`, { data: 'x'.repeat(2000) });
    expect(json.status).toBe(413);
    expect(json.body).toMatchObject({ statusCode: 413, error: 'Payload Too Large', code: 'FST_ERR_CTP_BODY_TOO_LARGE' });
    const raw = await call(TOKEN, 'POST', `/v1/sockets/${a.id}/send`, Buffer.alloc(2000, 1), { 'content-type': 'application/octet-stream' });
    expect(raw.status).toBe(413);
    expect(raw.body.code).toBe('FST_ERR_CTP_BODY_TOO_LARGE');
    const create413 = await call(TOKEN, 'POST', '/v1/sockets', JSON.stringify({ family: 'inet', type: 'stream', label: 'x'.repeat(2000) }), {
      'content-type': 'application/json',
    });
    expect(create413.status).toBe(413);
    expect((await call(TOKEN, 'GET', `/v1/sockets/${a.id}`)).body.stats.bytesSent).toBe(0);
    // under the limit it goes through
    expect((await call(TOKEN, 'POST', `/v1/sockets/${a.id}/send`, { data: 'y'.repeat(500) })).body).toEqual({ bytes: 500 });
    expect((await call(TOKEN, 'POST', `/v1/sockets/${b.id}/recv`, { timeoutMs: 1000, waitAll: true, maxBytes: 500 })).body.bytes).toBe(500);
  });

  it('a WebSocket message over wsMaxPayload closes the connection with 1009 and sends nothing', async () => {
    await boot({ wsMaxPayload: 1024 }, {}, true);
    const [a, b] = (await call(TOKEN, 'POST', '/v1/socketpairs', { type: 'stream' })).body.sockets;
    const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/sockets/${a.id}/stream?token=${TOKEN}`);
    clients.push(ws);
    ws.on('error', () => undefined);
    await once(ws, 'open');
    const closed = once(ws, 'close');
    // a flood of oversized frames: the first one ends it
    for (let i = 0; i < 20 && ws.readyState === WebSocket.OPEN; i++) ws.send(Buffer.alloc(4096, 7));
    const [code] = await closed;
    expect(code).toBe(1009);
    expect((await call(TOKEN, 'POST', `/v1/sockets/${b.id}/recv`, { timeoutMs: 0 })).status).toBe(504); // EAGAIN: nothing arrived
    expect((await call(TOKEN, 'GET', `/v1/sockets/${a.id}`)).body.stats.bytesSent).toBe(0);
    // an observer too
    const obs = new WebSocket(`ws://127.0.0.1:${port}/v1/events?token=${TOKEN}`);
    clients.push(obs);
    obs.on('error', () => undefined);
    await once(obs, 'open');
    const obsClosed = once(obs, 'close');
    obs.send('z'.repeat(2048));
    expect((await obsClosed)[0]).toBe(1009);
    await expectHealthy();
  });
});

describe('load shedding (SOCKCTL_MAX_EVENT_LOOP_DELAY_MS)', () => {
  it('once the event loop lagged past the limit, calls are 503 SOCKCTL_OVERLOADED with retry-after, until it recovers', async () => {
    await boot({ maxEventLoopDelayMs: 100 });
    expect((await call(TOKEN, 'GET', '/v1/sockets')).status).toBe(200);
    // a stall longer than the lag sampler's period (500 ms): the sample due during it fires 300+ ms late, and
    // calls are shed from then until the next sample finds the loop on time
    const end = Date.now() + 800;
    while (Date.now() < end);
    const shed = (await until(async () => {
      const r = await call(TOKEN, 'GET', '/v1/sockets');
      return r.status === 503 ? r : undefined;
    }, 'a 503 after the stall', 3000))!;
    expect(shed.body).toMatchObject({ statusCode: 503, error: 'Service Unavailable', code: 'SOCKCTL_OVERLOADED' });
    expect(shed.body.message).toMatch(/eventLoopDelay/);
    expect(shed.headers['retry-after']).toBe('1');
    await until(async () => (await call(TOKEN, 'GET', '/v1/sockets')).status === 200, 'served again', 5000);
    await expectHealthy();
  });
});

describe('rate limit (per user)', () => {
  it('rateLimitPerMinute 5: the 6th call of a user is 429 SOCKCTL_RATE_LIMITED; another user and health are still served', async () => {
    await boot({ rateLimitPerMinute: 5 }, { tokens: tokens() });
    for (let i = 0; i < 5; i++) expect((await call(ALICE, 'GET', '/v1/sockets')).status).toBe(200);
    const limited = await call(ALICE, 'GET', '/v1/sockets');
    expect(limited.status).toBe(429);
    expect(limited.body).toMatchObject({ statusCode: 429, error: 'Too Many Requests', code: 'SOCKCTL_RATE_LIMITED' });
    expect(limited.body.message).toMatch(/5 requests per minute/);
    expect(limited.headers['retry-after']).toBeDefined();
    // every route counts, not just one
    expect((await create(ALICE)).status).toBe(429);
    // keyed by user, not by address (all of these come from the same inject address)
    for (let i = 0; i < 5; i++) expect((await call(BOB, 'GET', '/v1/sockets')).status).toBe(200);
    expect((await call(BOB, 'GET', '/v1/sockets')).status).toBe(429);
    expect((await call(TOKEN, 'GET', '/v1/sockets')).status).toBe(200);
    for (let i = 0; i < 10; i++) await expectHealthy();
  });
});

describe('rate limit windows', () => {
  afterEach(() => vi.useRealTimers());

  // A window lasts a minute from its key's first request; retry-after says when it ends, and then the
  // user is served again with a full window.
  it('a limited user is served again once the window that limited them has passed', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const t0 = Date.UTC(2026, 11, 4, 12, 0, 0);
    vi.setSystemTime(t0);
    await boot({ rateLimitPerMinute: 2 }, { tokens: tokens() });
    expect((await call(ALICE, 'GET', '/v1/sockets')).status).toBe(200);
    vi.setSystemTime(t0 + 20_000);
    expect((await call(ALICE, 'GET', '/v1/sockets')).status).toBe(200);
    const limited = await call(ALICE, 'GET', '/v1/sockets');
    expect(limited.status).toBe(429);
    expect(limited.headers).toMatchObject({ 'retry-after': '40', 'x-ratelimit-reset': '40', 'x-ratelimit-remaining': '0' });
    vi.setSystemTime(t0 + 59_999);
    expect((await call(ALICE, 'GET', '/v1/sockets')).status).toBe(429);
    vi.setSystemTime(t0 + 60_000);
    for (let i = 0; i < 2; i++) expect((await call(ALICE, 'GET', '/v1/sockets')).status).toBe(200);
    expect((await call(ALICE, 'GET', '/v1/sockets')).status).toBe(429);
  });
});

describe('Host and Origin', () => {
  it('Host: evil.example is 403 (DNS rebinding); IP literals and localhost are fine; SOCKCTL_ALLOWED_HOSTS adds names', async () => {
    await boot({}, {}, false);
    const get = (host: string) => call(TOKEN, 'GET', '/v1/sockets', undefined, { host });
    for (const host of ['evil.example', 'evil.example:7070', 'localhost.evil.example', 'localhost.', '127.0.0.1.nip.io', 'lab.example'])
      expect((await get(host)).status, host).toBe(403);
    const r = await get('evil.example');
    expect(r.body).toMatchObject({ statusCode: 403, code: 'SOCKCTL_FORBIDDEN', message: expect.stringContaining('evil.example') });
    for (const host of ['127.0.0.1:7070', '127.0.0.1', 'localhost', 'localhost:7070', 'LOCALHOST:7070', '[::1]:7070', '[::1]'])
      expect((await get(host)).status, host).toBe(200);
    // the Host that passed last is not checked again (hardening.ts): a different one still is, every time
    for (const [host, status] of [['localhost', 200], ['evil.example', 403], ['localhost', 200], ['evil.example', 403]] as const)
      expect((await get(host)).status, host).toBe(status);
    await t!.close();
    await boot({ allowedHosts: 'lab.example, sockctl.lab.example' });
    for (const host of ['lab.example', 'lab.example:7070', 'LAB.example', 'sockctl.lab.example:80', 'localhost'])
      expect((await get(host)).status, host).toBe(200);
    for (const host of ['evil.example', 'sub.lab.example', 'lab.example.evil']) expect((await get(host)).status, host).toBe(403);
  });

  it('a WebSocket handshake from a foreign Origin is refused (403); same-host and listed origins are accepted', async () => {
    await boot({}, {}, true);
    const url = `ws://127.0.0.1:${port}/v1/events?token=${TOKEN}`;
    for (const origin of ['http://evil.example', 'null', `http://localhost.evil.example:${port}`, `http://127.0.0.1:${port + 1}`, `https://127.0.0.1:${port}.evil.example`]) {
      const r = await handshake(url, { origin });
      expect(r.opened, origin).toBe(false);
      expect(r.status, origin).toBe(403);
      expect(r.body, origin).toMatchObject({ code: 'SOCKCTL_FORBIDDEN' });
    }
    const same = await handshake(url, { origin: `http://127.0.0.1:${port}`, holdMs: 50 });
    expect(same.opened).toBe(true);
    const none = await handshake(url, { holdMs: 50 }); // non-browser clients send no Origin
    expect(none.opened).toBe(true);
    // the consumer stream too
    const [a] = (await call(TOKEN, 'POST', '/v1/socketpairs', { type: 'stream' })).body.sockets;
    expect((await handshake(`ws://127.0.0.1:${port}/v1/sockets/${a.id}/stream?token=${TOKEN}`, { origin: 'http://evil.example' })).status).toBe(403);
    // and SSE
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.get(
        { host: '127.0.0.1', port, path: '/v1/events', headers: { authorization: `Bearer ${TOKEN}`, accept: 'text/event-stream', origin: 'http://evil.example' } },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      requests.push(req);
      req.on('error', reject);
    });
    expect(status).toBe(403);
    await t!.close();
    await boot({ corsOrigins: 'http://dash.example,https://lab.example:8443' }, {}, true);
    const url2 = `ws://127.0.0.1:${port}/v1/events?token=${TOKEN}`;
    for (const origin of ['http://dash.example', 'https://lab.example:8443'])
      expect((await handshake(url2, { origin, holdMs: 50 })).opened, origin).toBe(true);
    for (const origin of ['http://dash.example.evil', 'https://dash.example', 'http://lab.example:8443', 'http://evil.example'])
      expect((await handshake(url2, { origin })).status, origin).toBe(403);
  });

  it('CORS with no origin allowed (the default): no access-control header on a preflight or a request, and a preflight is no way in', async () => {
    await boot();
    const preflight = await call(null, 'OPTIONS', '/v1/sockets', undefined, {
      origin: 'http://dash.example',
      'access-control-request-method': 'POST',
    });
    expect(preflight.status).toBe(401);
    const real = await call(TOKEN, 'GET', '/v1/sockets', undefined, { origin: 'http://dash.example' });
    expect(real.status).toBe(200);
    for (const r of [preflight, real]) expect(Object.keys(r.headers).filter((h) => h.startsWith('access-control-'))).toEqual([]);
  });

  it('CORS: a preflight from an allowed origin is answered with access-control-allow-origin; other origins get none', async () => {
    await boot({ corsOrigins: 'http://dash.example' });
    const preflight = (origin: string) =>
      call(null, 'OPTIONS', '/v1/sockets', undefined, {
        origin,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization,content-type',
      });
    const ok = await preflight('http://dash.example');
    expect(ok.status, JSON.stringify(ok.body)).toBeLessThan(300);
    expect(ok.headers['access-control-allow-origin']).toBe('http://dash.example');
    expect(String(ok.headers['access-control-allow-headers'])).toMatch(/authorization/);
    expect(String(ok.headers['access-control-allow-methods'])).toMatch(/POST/);
    for (const origin of ['http://evil.example', 'http://dash.example.evil', 'null']) {
      const r = await preflight(origin);
      expect(r.headers['access-control-allow-origin'], origin).toBeUndefined();
    }
    // the actual request from the allowed origin carries the header; from another it does not
    const real = await call(TOKEN, 'GET', '/v1/sockets', undefined, { origin: 'http://dash.example' });
    expect(real.status).toBe(200);
    expect(real.headers['access-control-allow-origin']).toBe('http://dash.example');
    const other = await call(TOKEN, 'GET', '/v1/sockets', undefined, { origin: 'http://evil.example' });
    expect(other.headers['access-control-allow-origin']).toBeUndefined();
    // an OPTIONS that is not a preflight is no way in: refused (400 by the CORS plugin, or 401)
    const bare = await call(null, 'OPTIONS', '/v1/sockets', undefined, { origin: 'http://dash.example' });
    expect([400, 401]).toContain(bare.status);
    expect(bare.body.items).toBeUndefined();
    // a preflight answer is no way in either: the real request still needs the token
    expect((await call(null, 'GET', '/v1/sockets', undefined, { origin: 'http://dash.example' })).status).toBe(401);
  });

  it('without SOCKCTL_CORS_ORIGINS no origin is allowed cross-origin', async () => {
    await boot();
    const r = await call(null, 'OPTIONS', '/v1/sockets', undefined, { origin: 'http://dash.example', 'access-control-request-method': 'GET' });
    expect(r.headers['access-control-allow-origin']).toBeUndefined();
    const real = await call(TOKEN, 'GET', '/v1/sockets', undefined, { origin: 'http://dash.example' });
    expect(real.headers['access-control-allow-origin']).toBeUndefined();
  });
});

describe('security headers', () => {
  it('every answer carries nosniff, frame and referrer policies, and no x-powered-by: success, 404, 401, 403, 429', async () => {
    await boot({ rateLimitPerMinute: 3 }, { tokens: tokens() });
    const answers: [string, Reply<any>][] = [
      ['200', await call(TOKEN, 'GET', '/v1/sockets')],
      ['201', await create(TOKEN)],
      ['health', await call(null, 'GET', '/v1/health')],
      ['404', await call(TOKEN, 'GET', '/v1/sockets/nope')],
      ['400', await call(TOKEN, 'POST', '/v1/sockets', { family: 'nope' })],
      ['401', await call(null, 'GET', '/v1/sockets')],
      ['403', await call(TOKEN, 'GET', '/v1/sockets', undefined, { host: 'evil.example' })],
    ];
    for (let i = 0; i < 3; i++) await call(ALICE, 'GET', '/v1/sockets');
    answers.push(['429', await call(ALICE, 'GET', '/v1/sockets')]);
    expect(answers.at(-1)![1].status).toBe(429);
    for (const [what, r] of answers) {
      expect(r.headers['x-content-type-options'], what).toBe('nosniff');
      expect(r.headers['x-frame-options'], what).toBe('SAMEORIGIN');
      expect(r.headers['referrer-policy'], what).toBe('no-referrer');
      expect(r.headers['cross-origin-resource-policy'], what).toBe('same-site');
      expect(r.headers['x-powered-by'], what).toBeUndefined();
    }
    // the quota headers come with the 429 only
    expect(answers.at(-1)![1].headers).toMatchObject({ 'x-ratelimit-limit': '3', 'x-ratelimit-remaining': '0', 'retry-after': expect.any(String) });
    expect(answers[0]![1].headers['x-ratelimit-remaining']).toBeUndefined();
    // the pages a browser renders (Swagger UI) get helmet's whole set
    const docs = await call(null, 'GET', '/docs/');
    expect(docs.status).toBe(200);
    expect(docs.headers).toMatchObject({ 'x-content-type-options': 'nosniff', 'cross-origin-opener-policy': 'same-origin', 'strict-transport-security': expect.stringContaining('max-age') });
  });
});

describe('observers per user', () => {
  it('userObservers 1: a second /v1/events WebSocket of the same user is closed with 4429; others and later ones are served', async () => {
    await boot({ userObservers: 1 }, { tokens: tokens() }, true);
    const url = (token: string) => `ws://127.0.0.1:${port}/v1/events?token=${token}`;
    const first = await handshake(url(ALICE), { holdMs: 100 });
    expect(first.opened).toBe(true);
    const second = await handshake(url(ALICE));
    expect(second.opened).toBe(true);
    expect(second.code).toBe(4429);
    // SSE counts against the same limit
    const sse = await new Promise<number>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, path: '/v1/events', headers: { authorization: `Bearer ${ALICE}`, accept: 'text/event-stream' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      requests.push(req);
      req.on('error', reject);
    });
    expect(sse).toBe(429);
    // bob has his own
    const bob = await handshake(url(BOB), { holdMs: 100 });
    expect(bob.opened).toBe(true);
    expect(bob.code).toBeUndefined();
    // the first still works: it sees alice's socket being created
    const events: any[] = [];
    first.ws.on('message', (d) => events.push(JSON.parse(String(d))));
    const s = (await create(ALICE)).body;
    await until(() => events.some((e) => e.socket === s.id && e.type === 'created'), 'the first observer still fed');
    // once it closes, alice may open another
    const gone = once(first.ws, 'close');
    first.ws.close();
    await gone;
    await until(async () => {
      const again = await handshake(url(ALICE), { holdMs: 100 });
      again.ws.terminate();
      return again.code === undefined && again.opened;
    }, 'a new observer admitted after the first closed');
  });
});

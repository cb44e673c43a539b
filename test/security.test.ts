// Security (issue 5): every route but health refuses a request without a valid token (the route list is
// read from the app itself, so a new route is covered without editing this file); two users cannot see or
// touch each other's sockets, streams or events, an admin can; tokens reload on demand and never reach
// the log.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { startApp, TOKEN, until, type Reply, type TestApp } from './helpers.js';

const ALICE = 'alice-token-0123456789abcdef';
const BOB = 'bob-token-0123456789abcdefgh';
const ROOT = 'root-token-0123456789abcdefg';
const WRONG = 'wrong-token-0123456789abcdef';
const TOKENS = {
  users: [
    { name: 'alice', token: ALICE, role: 'user' },
    { name: 'bob', token: BOB, role: 'user' },
    { name: 'root', token: ROOT, role: 'admin' },
  ],
};

/** One route of the app and one of its methods, as fastify's router holds it. */
interface Route {
  method: string;
  path: string;
}

/**
 * Every (method, path) the app routes, read from `app.printRoutes()` (the router's own tree). Each line is
 * "<indent><├── |└── ><segment> (METHODS)"; a segment continues its parent's path.
 */
function routesOf(app: TestApp['app']): Route[] {
  const out: Route[] = [];
  const stack: string[] = [];
  for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
    const m = /^((?:│ {3}| {4})*)(?:├── |└── )(.+?) \(([A-Z, ]+)\)$/.exec(line);
    if (!m) {
      if (line.trim() !== '') throw new Error(`unparsed printRoutes line: ${JSON.stringify(line)}`);
      continue;
    }
    const depth = m[1]!.length / 4;
    stack.length = depth;
    stack.push(m[2]!);
    let path = stack.join('');
    if (!path.startsWith('/')) path = `/${path}`;
    for (const method of m[3]!.split(',').map((s) => s.trim())) out.push({ method, path });
  }
  return out;
}

const isPublic = (r: Route) => r.path === '/v1/health' || r.path === '/docs' || r.path.startsWith('/docs/');

/** A concrete URL for a route pattern: `:id` → the given id, any other parameter or wildcard → "x". */
const urlFor = (path: string, id: string) => path.replace(/:id\b/g, id).replace(/:[A-Za-z_]+/g, 'x').replace(/\*/g, 'x');

/** A body the route's schema accepts, so that a refusal is the handler's and not the validator's. */
function bodyFor(r: Route): object | undefined {
  if (r.method === 'GET' || r.method === 'HEAD' || r.method === 'DELETE' || r.method === 'OPTIONS') return undefined;
  const tail = r.path.split('/').pop();
  switch (tail) {
    case 'sockets':
      return { family: 'inet', type: 'stream' };
    case 'socketpairs':
      return { type: 'stream' };
    case 'bind':
      return { address: '127.0.0.1', port: 0 };
    case 'connect':
      return { address: '127.0.0.1', port: 9, timeoutMs: 0 };
    case 'accept':
    case 'recv':
      return { timeoutMs: 0 };
    case 'shutdown':
      return { how: 'SHUT_RDWR' };
    case 'send':
      return { data: 'x' };
    case 'options':
      return { TCP_NODELAY: true };
    default:
      return {};
  }
}

interface Upgrade {
  /** The HTTP status of a refused upgrade. */
  status?: number;
  body?: any;
  /** The close of an accepted one (the server closes it, or we do after `open`). */
  opened: boolean;
  close?: { code: number; reason: string };
  messages: any[];
}

/**
 * A real `ws` client's handshake. A refusal resolves with its status and JSON body; an accepted upgrade
 * waits for the server to close it (up to `holdMs`, then the client closes), collecting text frames.
 */
function upgrade(url: string, headers: Record<string, string> = {}, holdMs = 0, origin?: string): Promise<Upgrade> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers, ...(origin ? { origin } : {}) });
    const result: Upgrade = { opened: false, messages: [] };
    ws.on('unexpected-response', (req, res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => {
        result.status = res.statusCode;
        try {
          result.body = JSON.parse(text);
        } catch {
          result.body = text;
        }
        req.destroy();
        resolve(result);
      });
    });
    ws.on('message', (data) => {
      try {
        result.messages.push(JSON.parse(data.toString()));
      } catch {
        result.messages.push(data.toString());
      }
    });
    ws.on('open', () => {
      result.opened = true;
      setTimeout(() => ws.readyState === WebSocket.OPEN && ws.close(1000), holdMs).unref();
    });
    ws.on('close', (code, reason) => {
      if (!result.opened) return;
      result.close = { code, reason: reason.toString() };
      resolve(result);
    });
    ws.on('error', (e) => {
      if (result.status === undefined && !result.opened) reject(e);
    });
  });
}

let t: TestApp;
let port = 0;
const base = () => `127.0.0.1:${port}`;
const as = (token: string) => ({ authorization: `Bearer ${token}` });

async function call(token: string | null, method: string, url: string, body?: unknown, headers: Record<string, string> = {}): Promise<Reply<any>> {
  const r = await t.app.inject({
    method: method as any,
    url,
    headers: { ...(token === null ? {} : as(token)), ...headers },
    ...(body === undefined ? {} : { payload: body as object }),
  });
  const type = String(r.headers['content-type'] ?? '');
  return {
    status: r.statusCode,
    body: type.includes('application/json') && r.body.length > 0 ? JSON.parse(r.body) : r.body,
    raw: r.rawPayload,
    headers: r.headers,
  };
}

async function ok(token: string, method: string, url: string, body?: unknown, status = 200): Promise<any> {
  const r = await call(token, method, url, body);
  expect(r.status, `${method} ${url}: ${JSON.stringify(r.body)}`).toBe(status);
  return r.body;
}

const create = (token: string, extra: object = {}) => ok(token, 'POST', '/v1/sockets', { family: 'inet', type: 'stream', ...extra }, 201);

describe('route inventory: no valid token, no service', () => {
  let routes: Route[] = [];
  let victim = '';

  beforeAll(async () => {
    t = await startApp({}, { tokens: TOKENS });
    await t.app.listen({ host: '127.0.0.1', port: 0 });
    port = (t.app.server.address() as net.AddressInfo).port;
    routes = routesOf(t.app);
    victim = (await create(TOKEN, { label: 'victim' })).id;
  });
  afterAll(async () => {
    await t.close();
  });

  it('the inventory comes from the router and holds the known routes', () => {
    const names = routes.map((r) => `${r.method} ${r.path}`);
    for (const known of [
      'GET /v1/health',
      'POST /v1/sockets',
      'GET /v1/sockets',
      'DELETE /v1/sockets',
      'GET /v1/sockets/:id',
      'DELETE /v1/sockets/:id',
      'POST /v1/sockets/:id/bind',
      'POST /v1/sockets/:id/listen',
      'POST /v1/sockets/:id/accept',
      'POST /v1/sockets/:id/connect',
      'POST /v1/sockets/:id/shutdown',
      'POST /v1/sockets/:id/send',
      'POST /v1/sockets/:id/recv',
      'GET /v1/sockets/:id/options',
      'PATCH /v1/sockets/:id/options',
      'POST /v1/socketpairs',
      'GET /v1/sockets/:id/stream',
      'GET /v1/events',
    ])
      expect(names).toContain(known);
    // every documented path is routed (the OpenAPI document is generated from the same routes)
    expect(routes.filter((r) => !isPublic(r)).length).toBeGreaterThanOrEqual(20);
  });

  it('every HTTP route but health and the docs answers 401 SOCKCTL_UNAUTHORIZED without a valid token', async () => {
    const guarded = routes.filter((r) => !isPublic(r));
    const presented: [string, Record<string, string>][] = [
      ['no token', {}],
      ['a wrong token', as(WRONG)],
      ['an empty bearer', { authorization: 'Bearer ' }],
      ['a token with a suffix', as(`${TOKEN}x`)],
      ['a prefix of the token', as(TOKEN.slice(0, -1))],
      ['the token as Basic credentials', { authorization: `Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}` }],
      ['the token without a scheme', { authorization: TOKEN }],
    ];
    let checked = 0;
    for (const r of guarded) {
      const url = urlFor(r.path, victim);
      for (const [what, headers] of presented) {
        const res = await call(null, r.method, url, bodyFor(r), headers);
        const label = `${r.method} ${url} with ${what}`;
        expect(res.status, label).toBe(401);
        expect(res.headers['www-authenticate'], label).toMatch(/^Bearer/);
        if (r.method !== 'HEAD') expect(res.body, label).toMatchObject({ statusCode: 401, code: 'SOCKCTL_UNAUTHORIZED' });
        checked++;
      }
      // ?token= is for browsers' WebSocket and SSE handshakes only: a plain request cannot use it
      const q = `${url}${url.includes('?') ? '&' : '?'}token=${encodeURIComponent(TOKEN)}`;
      expect((await call(null, r.method, q, bodyFor(r))).status, `${r.method} ${q}`).toBe(401);
    }
    expect(checked).toBe(guarded.length * presented.length);
    // nothing happened to the socket all those requests named
    const after = await ok(TOKEN, 'GET', `/v1/sockets/${victim}`);
    expect(after).toMatchObject({ state: 'created', local: null, stats: { bytesSent: 0, messagesSent: 0 } });
    // the exceptions are real exceptions
    expect((await call(null, 'GET', '/v1/health')).status).toBe(200);
  });

  it('every GET route refuses a WebSocket upgrade without a valid token (401 before the upgrade)', async () => {
    const gets = routes.filter((r) => r.method === 'GET' && !isPublic(r));
    const wsRoutes: string[] = [];
    for (const r of gets) {
      const url = `ws://${base()}${urlFor(r.path, victim)}`;
      for (const [what, u, headers] of [
        ['no token', url, {}],
        ['a wrong bearer', url, as(WRONG)],
        ['a wrong ?token=', `${url}?token=${WRONG}`, {}],
        ['an empty ?token=', `${url}?token=`, {}],
      ] as [string, string, Record<string, string>][]) {
        const res = await upgrade(u, headers);
        expect(res.opened, `${r.path} with ${what}`).toBe(false);
        expect(res.status, `${r.path} with ${what}`).toBe(401);
        expect(res.body, `${r.path} with ${what}`).toMatchObject({ code: 'SOCKCTL_UNAUTHORIZED' });
      }
      // with a valid token: which GET routes are WebSocket routes (they open)
      const valid = await upgrade(`${url}?token=${TOKEN}`, {}, 50);
      if (valid.opened) wsRoutes.push(r.path);
    }
    expect(wsRoutes).toEqual(expect.arrayContaining(['/v1/sockets/:id/stream', '/v1/events']));
    // and the header form works as well as the query form for a valid token
    const header = await upgrade(`ws://${base()}/v1/events`, as(TOKEN), 50);
    expect(header.opened).toBe(true);
  });

  // The answer's status, and whether the service closed the socket after it (an upgrade's socket belongs
  // to no HTTP server once Node handed it over: left open, it would be held for good).
  async function rawUpgrade(path: string, extra = '', waitMs = 3000): Promise<{ status: number; closed: boolean }> {
    const socket = net.connect(port, '127.0.0.1');
    let text = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (text += d));
    socket.on('error', () => undefined);
    const closed = new Promise<boolean>((resolve) => {
      socket.once('close', () => resolve(true));
      setTimeout(() => resolve(false), waitMs).unref();
    });
    socket.write(
      `GET ${path} HTTP/1.1\r\nhost: ${base()}\r\nconnection: upgrade\r\nupgrade: websocket\r\n` +
        `sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n${extra}\r\n`,
    );
    const wasClosed = await closed;
    socket.destroy();
    return { status: Number(text.slice(9, 12)), closed: wasClosed };
  }

  it('a refused upgrade is answered and its socket closed, whichever layer refused it', async () => {
    const q = `?token=${TOKEN}`;
    const bearer = `authorization: Bearer ${TOKEN}\r\n`;
    for (const [what, path, extra, status] of [
      ['a foreign Origin (refused before the WebSocket plugin sees it)', `/v1/events${q}`, 'origin: http://evil.example\r\n', 403],
      ['no token', '/v1/events', '', 401],
      ['a REST route (it would answer 200)', '/v1/sockets', bearer, 400],
      ['an unknown path', '/v1/nowhere', bearer, 404],
    ] as const) {
      expect(await rawUpgrade(path, extra), what).toEqual({ status, closed: true });
    }
    // the control: an accepted upgrade stays open
    expect(await rawUpgrade(`/v1/events${q}`, '', 300)).toEqual({ status: 101, closed: false });
  });

  it('URL spellings do not reach a guarded route without a token', async () => {
    for (const url of [
      '/v1/health/../sockets',
      '/v1/health/..%2Fsockets',
      '/docs/../v1/sockets',
      '/docs/..%2F..%2Fv1%2Fsockets',
      '/v1/health?/../sockets',
      '/v1//sockets',
      '/v1/sockets/',
      '/v1/%73ockets',
      '/V1/SOCKETS',
      `/v1/sockets/${victim}%2Fbind`,
      '/v1/health%00/../sockets',
    ]) {
      const r = await call(null, 'GET', url);
      const what = `${url}: ${r.status} ${String(r.raw).slice(0, 200)}`;
      // health itself (a query that looks like a path) is the one 200, and it is health's answer
      if (r.status === 200) expect(r.body, what).toMatchObject({ status: 'ok' });
      else expect([400, 401, 403, 404], what).toContain(r.status);
      expect(String(r.raw)).not.toContain(victim);
    }
  });
});

describe('two users and an admin', () => {
  let routes: Route[] = [];
  const open: WebSocket[] = [];

  beforeAll(async () => {
    t = await startApp({}, { tokens: TOKENS });
    await t.app.listen({ host: '127.0.0.1', port: 0 });
    port = (t.app.server.address() as net.AddressInfo).port;
    routes = routesOf(t.app);
  });
  afterEach(async () => {
    for (const ws of open.splice(0)) ws.terminate();
    // every test starts without open sockets
    await ok(TOKEN, 'DELETE', '/v1/sockets?label=lab');
    for (const s of t.app.registry.list()) if (s.isOpen) s.close('test cleanup');
  });
  afterAll(async () => {
    await t.close();
  });

  it("neither user can read, operate, close or stream the other's socket: 404 exactly as a missing id", async () => {
    const a = await create(ALICE, { label: 'lab' });
    const missing = 'AAAAAAAAAAAA';
    const perSocket = routes.filter((r) => r.path.includes(':id'));
    expect(perSocket.length).toBeGreaterThanOrEqual(12);
    for (const r of perSocket) {
      const foreign = await call(BOB, r.method, urlFor(r.path, a.id), bodyFor(r));
      const absent = await call(BOB, r.method, urlFor(r.path, missing), bodyFor(r));
      const label = `${r.method} ${r.path}`;
      expect(foreign.status, `${label}: ${JSON.stringify(foreign.body)}`).toBe(404);
      expect(absent.status, label).toBe(404);
      if (r.method !== 'HEAD') {
        // the same answer, word for word, once the id is taken out
        const scrub = (b: unknown, id: string) => JSON.parse(JSON.stringify(b).replaceAll(id, '<id>'));
        expect(scrub(foreign.body, a.id), label).toEqual(scrub(absent.body, missing));
        if (!r.path.endsWith('/stream')) expect(foreign.body, label).toMatchObject({ code: 'SOCKCTL_NOT_FOUND' });
      }
    }
    // the WebSocket consumer: 4404 for both
    for (const id of [a.id, missing]) {
      const res = await upgrade(`ws://${base()}/v1/sockets/${id}/stream?token=${BOB}`, {}, 2000);
      expect(res.opened).toBe(true);
      expect(res.close?.code).toBe(4404);
      expect(res.messages[0]).toMatchObject({ type: 'error', code: 'SOCKCTL_NOT_FOUND' });
    }
    // alice's socket is untouched: not bound, nothing sent or received, still open, no consumer
    const after = await ok(ALICE, 'GET', `/v1/sockets/${a.id}`);
    expect(after).toMatchObject({ state: 'created', local: null, remote: null, shutdown: { read: false, write: false } });
    expect(after.stats).toEqual({ bytesSent: 0, bytesReceived: 0, messagesSent: 0, messagesReceived: 0 });
    expect(after.lastError).toBeNull();
    // and she can still stream it herself
    const mine = await upgrade(`ws://${base()}/v1/sockets/${a.id}/stream?token=${ALICE}`, {}, 100);
    expect(mine.opened).toBe(true);
    expect(mine.close?.code).not.toBe(4404);
  });

  it('a connected pair: bob cannot send on, recv from or shut down alice’s sockets, and bulk close takes only his own', async () => {
    const [a1, a2] = (await ok(ALICE, 'POST', '/v1/socketpairs', { type: 'stream', label: 'lab' }, 201)).sockets;
    const b1 = await create(BOB, { label: 'lab' });
    await ok(ALICE, 'POST', `/v1/sockets/${a1.id}/send`, { data: 'secret' });
    // bob: every data call is a 404
    expect((await call(BOB, 'POST', `/v1/sockets/${a2.id}/recv`, { timeoutMs: 0 })).status).toBe(404);
    expect((await call(BOB, 'POST', `/v1/sockets/${a2.id}/recv`, { timeoutMs: 0, peek: true })).status).toBe(404);
    expect((await call(BOB, 'POST', `/v1/sockets/${a1.id}/send`, { data: 'x' })).status).toBe(404);
    const raw = await t.app.inject({
      method: 'POST',
      url: `/v1/sockets/${a1.id}/send`,
      headers: { ...as(BOB), 'content-type': 'application/octet-stream' },
      payload: Buffer.from('x'),
    });
    expect(raw.statusCode).toBe(404);
    const rawRecv = await t.app.inject({
      method: 'POST',
      url: `/v1/sockets/${a2.id}/recv`,
      headers: { ...as(BOB), accept: 'application/octet-stream' },
      payload: { timeoutMs: 0 },
    });
    expect(rawRecv.statusCode).toBe(404);
    expect(rawRecv.body).not.toContain('secret');
    // lists: each sees their own; a label filter does not widen it; admin sees everything
    const ids = (items: any[]) => items.filter((s: any) => s.state !== 'closed').map((s: any) => s.id).sort();
    expect(ids((await ok(ALICE, 'GET', '/v1/sockets')).items)).toEqual([a1.id, a2.id].sort());
    expect(ids((await ok(ALICE, 'GET', '/v1/sockets?label=lab')).items)).toEqual([a1.id, a2.id].sort());
    expect(ids((await ok(BOB, 'GET', '/v1/sockets?label=lab')).items)).toEqual([b1.id]);
    expect(ids((await ok(BOB, 'GET', '/v1/sockets?state=connected')).items)).toEqual([]);
    for (const admin of [TOKEN, ROOT]) {
      const all = ids((await ok(admin, 'GET', '/v1/sockets?label=lab')).items);
      expect(all).toEqual([a1.id, a2.id, b1.id].sort());
    }
    // bob's bulk close of the shared label closes his one socket
    expect(await ok(BOB, 'DELETE', '/v1/sockets?label=lab')).toEqual({ closed: 1 });
    expect((await ok(BOB, 'GET', `/v1/sockets/${b1.id}`)).state).toBe('closed');
    for (const s of [a1, a2]) expect((await ok(ALICE, 'GET', `/v1/sockets/${s.id}`)).state).toBe('connected');
    expect(await ok(BOB, 'DELETE', '/v1/sockets?label=lab')).toEqual({ closed: 0 });
    // the data is still alice's, whole
    expect(await ok(ALICE, 'POST', `/v1/sockets/${a2.id}/recv`, { timeoutMs: 1000 })).toMatchObject({ data: 'secret', bytes: 6 });
    // alice's bulk close closes her two, and bob's DELETE of hers stays a 404 throughout
    expect((await call(BOB, 'DELETE', `/v1/sockets/${a1.id}`)).status).toBe(404);
    expect(await ok(ALICE, 'DELETE', '/v1/sockets?label=lab')).toEqual({ closed: 2 });
    expect((await call(BOB, 'DELETE', `/v1/sockets/${a1.id}`)).status).toBe(404);
  });

  it('an admin sees, operates and closes everyone’s sockets, one by one and by label', async () => {
    const a = await create(ALICE, { label: 'lab' });
    const b = await create(BOB, { label: 'lab' });
    const c = await create(ALICE, { label: 'other' });
    for (const admin of [TOKEN, ROOT]) for (const s of [a, b, c]) expect((await ok(admin, 'GET', `/v1/sockets/${s.id}`)).id).toBe(s.id);
    // an admin's operation on a user's socket happens (and the socket stays the user's)
    await ok(ROOT, 'POST', `/v1/sockets/${a.id}/bind`, { address: '127.0.0.1', port: 0 });
    expect((await ok(ALICE, 'GET', `/v1/sockets/${a.id}`)).state).toBe('bound');
    expect(await ok(ROOT, 'DELETE', '/v1/sockets?label=lab')).toEqual({ closed: 2 });
    for (const [s, token] of [
      [a, ALICE],
      [b, BOB],
    ] as const)
      expect((await ok(token, 'GET', `/v1/sockets/${s.id}`)).state).toBe('closed');
    expect((await ok(ALICE, 'GET', `/v1/sockets/${c.id}`)).state).toBe('created');
    expect((await ok(TOKEN, 'DELETE', `/v1/sockets/${c.id}`)).state).toBe('closed');
  });

  it("an accepted socket belongs to the listener's owner, not to the connecting user", async () => {
    const L = await create(ALICE, { label: 'lab' });
    await ok(ALICE, 'POST', `/v1/sockets/${L.id}/bind`, { address: '127.0.0.1', port: 0 });
    const { local } = await ok(ALICE, 'POST', `/v1/sockets/${L.id}/listen`, { backlog: 4 });
    const C = await create(BOB, { label: 'lab' });
    await ok(BOB, 'POST', `/v1/sockets/${C.id}/connect`, local);
    const A = await ok(ALICE, 'POST', `/v1/sockets/${L.id}/accept`, { timeoutMs: 2000 }, 201);
    expect(A.listener).toBe(L.id);
    expect((await call(BOB, 'GET', `/v1/sockets/${A.id}`)).status).toBe(404);
    expect((await call(BOB, 'POST', `/v1/sockets/${A.id}/recv`, { timeoutMs: 0 })).status).toBe(404);
    expect((await call(BOB, 'POST', `/v1/sockets/${L.id}/accept`, { timeoutMs: 0 })).status).toBe(404);
    const openIds = (items: any[]) => items.filter((s: any) => s.state !== 'closed').map((s: any) => s.id).sort();
    expect(openIds((await ok(ALICE, 'GET', '/v1/sockets')).items)).toEqual([L.id, A.id].sort());
    expect(openIds((await ok(BOB, 'GET', '/v1/sockets')).items)).toEqual([C.id]);
    expect(t.app.registry.find(A.id)?.owner).toBe('alice');
    // the same through the consumer stream's autoAccept
    const ws = new WebSocket(`ws://${base()}/v1/sockets/${L.id}/stream?autoAccept=true&token=${ALICE}`);
    open.push(ws);
    const events: any[] = [];
    ws.on('message', (d) => events.push(JSON.parse(d.toString())));
    await once(ws, 'open');
    const C2 = await create(BOB, { label: 'lab' });
    await ok(BOB, 'POST', `/v1/sockets/${C2.id}/connect`, local);
    const accepted = await until(() => events.find((e) => e.type === 'accepted'), 'autoAccept');
    expect(t.app.registry.find(accepted.child)?.owner).toBe('alice');
    expect((await call(BOB, 'GET', `/v1/sockets/${accepted.child}`)).status).toBe(404);
    expect((await call(ALICE, 'GET', `/v1/sockets/${accepted.child}`)).status).toBe(200);
  });

  it("/v1/events: alice's observers carry only alice's events, live and replayed, WebSocket and SSE; admin's carry all", async () => {
    const start = t.app.events.headSeq;
    const aliceWs = collect(`ws://${base()}/v1/events?token=${ALICE}`);
    const bobWs = collect(`ws://${base()}/v1/events?token=${BOB}`);
    const adminWs = collect(`ws://${base()}/v1/events?token=${ROOT}`);
    // alice asks for bob's socket by id and by label: still nothing of bob's
    await Promise.all([aliceWs.opened, bobWs.opened, adminWs.opened]);
    await until(() => t.app.events.subscribers >= 3, 'observers subscribed');

    const b = await create(BOB, { label: 'lab' });
    const spy = collect(`ws://${base()}/v1/events?token=${ALICE}&socket=${b.id}&data=true`);
    const spyLabel = collect(`ws://${base()}/v1/events?token=${ALICE}&label=lab&data=true`);
    await Promise.all([spy.opened, spyLabel.opened]);
    await until(() => t.app.events.subscribers >= 5, 'spies subscribed');
    const [b1, b2] = (await ok(BOB, 'POST', '/v1/socketpairs', { type: 'stream', label: 'lab' }, 201)).sockets;
    await ok(BOB, 'POST', `/v1/sockets/${b1.id}/send`, { data: 'bob-secret' });
    await ok(BOB, 'POST', `/v1/sockets/${b2.id}/recv`, { timeoutMs: 1000 });
    await ok(BOB, 'DELETE', `/v1/sockets/${b.id}`);
    // then alice's own socket: once her observers have its `closed`, everything before it was delivered
    const a = await create(ALICE, { label: 'lab' });
    await ok(ALICE, 'DELETE', `/v1/sockets/${a.id}`);
    const done = (o: Collector, id: string) => until(() => o.events.some((e) => e.socket === id && e.type === 'closed'), 'closed seen');
    await Promise.all([done(aliceWs, a.id), done(spyLabel, a.id), done(adminWs, a.id), done(bobWs, b.id)]);
    const bobIds = new Set([b.id, b1.id, b2.id]);
    const sockets = (o: Collector) => new Set(o.events.map((e) => e.socket));
    // (alice's sockets of earlier tests may still report kernel state changes: hers too)
    const owners = (o: Collector) => new Set([...sockets(o)].map((id) => t.app.registry.find(id)?.owner ?? `unknown ${id}`));
    expect([...owners(aliceWs)]).toEqual(['alice']);
    expect(sockets(aliceWs).has(a.id)).toBe(true);
    expect([...owners(spyLabel)]).toEqual(['alice']);
    for (const id of bobIds) expect(sockets(aliceWs).has(id) || sockets(spyLabel).has(id)).toBe(false);
    expect([...owners(bobWs)]).toEqual(['bob']);
    expect(spy.events).toEqual([]);
    expect(JSON.stringify(aliceWs.events)).not.toContain('bob-secret');
    for (const id of bobIds) expect(sockets(bobWs).has(id)).toBe(true);
    expect(sockets(bobWs).has(a.id)).toBe(false);
    for (const id of [...bobIds, a.id]) expect(sockets(adminWs).has(id)).toBe(true);

    // replay (?after=) is filtered the same way
    const replay = collect(`ws://${base()}/v1/events?token=${ALICE}&after=${start}`);
    await replay.opened;
    await done(replay, a.id);
    expect([...owners(replay)]).toEqual(['alice']);
    // and so is SSE with Last-Event-ID
    const sse = await sseEvents(ALICE, start, (e) => e.socket === a.id && e.type === 'closed');
    expect(new Set(sse.map((e) => t.app.registry.find(e.socket)?.owner))).toEqual(new Set(['alice']));
    const sseAdmin = await sseEvents(ROOT, start, (e) => e.socket === a.id && e.type === 'closed');
    for (const id of bobIds) expect(sseAdmin.some((e) => e.socket === id)).toBe(true);
  });

  interface Collector {
    events: any[];
    opened: Promise<unknown>;
  }
  function collect(url: string): Collector {
    const ws = new WebSocket(url);
    open.push(ws);
    const c: Collector = { events: [], opened: once(ws, 'open') };
    ws.on('message', (d) => c.events.push(JSON.parse(d.toString())));
    ws.on('error', () => undefined);
    return c;
  }

  /** SSE events after `after` (Last-Event-ID) until `stop` matches one. */
  function sseEvents(token: string, after: number, stop: (e: any) => boolean): Promise<any[]> {
    return new Promise((resolve, reject) => {
      const events: any[] = [];
      const req = http.get(
        { host: '127.0.0.1', port, path: '/v1/events', headers: { ...as(token), accept: 'text/event-stream', 'last-event-id': String(after) } },
        (res) => {
          if (res.statusCode !== 200) return reject(new Error(`SSE status ${res.statusCode}`));
          let buf = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            buf += chunk;
            for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
              const data = buf
                .slice(0, i)
                .split('\n')
                .filter((l) => l.startsWith('data: '))
                .map((l) => l.slice(6))
                .join('\n');
              buf = buf.slice(i + 2);
              if (!data) continue;
              const e = JSON.parse(data);
              events.push(e);
              if (stop(e)) {
                req.destroy();
                resolve(events);
              }
            }
          });
        },
      );
      req.on('error', (e) => (req.destroyed ? undefined : reject(e)));
      setTimeout(() => {
        req.destroy();
        reject(new Error('SSE: stop event not seen'));
      }, 5000).unref();
    });
  }
});

describe('tokens', () => {
  afterEach(async () => {
    await t?.close();
    t = undefined as unknown as TestApp;
  });

  it('reload on demand: a changed file takes effect at reload(); old tokens are refused, new accepted, sockets stay owned', async () => {
    t = await startApp({}, { tokens: TOKENS });
    const file = join(t.unixDir, 'tokens.json');
    const a = await create(ALICE);
    const NEW = 'alice-new-token-0123456789ab';
    const CAROL = 'carol-token-0123456789abcdef';
    writeFileSync(
      file,
      JSON.stringify({ users: [{ name: 'alice', token: NEW, role: 'user' }, { name: 'carol', token: CAROL, role: 'user' }] }),
    );
    // not before the reload
    expect((await call(ALICE, 'GET', '/v1/sockets')).status).toBe(200);
    expect((await call(NEW, 'GET', '/v1/sockets')).status).toBe(401);
    expect(t.app.users.reload()).toBe(3); // the SOCKCTL_TOKEN admin, alice, carol
    expect((await call(ALICE, 'GET', '/v1/sockets')).status).toBe(401);
    expect((await call(BOB, 'GET', '/v1/sockets')).status).toBe(401);
    expect((await call(ROOT, 'GET', '/v1/sockets')).status).toBe(401);
    expect((await call(NEW, 'GET', `/v1/sockets/${a.id}`)).status).toBe(200); // alice is alice by name
    expect((await call(CAROL, 'GET', `/v1/sockets/${a.id}`)).status).toBe(404);
    expect((await call(TOKEN, 'GET', '/v1/sockets')).status).toBe(200);
    // a broken file: reload throws and the users stay as they were
    writeFileSync(file, JSON.stringify({ users: [{ name: 'alice', token: 'short', role: 'user' }] }));
    expect(() => t.app.users.reload()).toThrow(/tokens\.json/);
    expect((await call(NEW, 'GET', '/v1/sockets')).status).toBe(200);
    writeFileSync(file, '{"users": [');
    expect(() => t.app.users.reload()).toThrow();
    expect((await call(CAROL, 'GET', '/v1/sockets')).status).toBe(200);
    writeFileSync(
      file,
      JSON.stringify({ users: [{ name: 'x', token: NEW, role: 'user' }, { name: 'x', token: CAROL, role: 'user' }] }),
    );
    expect(() => t.app.users.reload()).toThrow(/twice/);
  });

  // A keep-alive connection is not re-hashed for the token it last authenticated with: the reload must
  // still end that token on the very same connection, and another token on it is checked afresh.
  it('one keep-alive connection: a reload ends its token at once; a wrong token after a good one is 401', async () => {
    t = await startApp({}, { tokens: TOKENS });
    await t.app.listen({ host: '127.0.0.1', port: 0 });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const sockets = new Set<net.Socket>();
    const get = (token: string) =>
      new Promise<number>((resolve, reject) => {
        const req = http.get(
          { host: '127.0.0.1', port: (t.app.server.address() as net.AddressInfo).port, path: '/v1/sockets', agent, headers: as(token) },
          (res) => {
            sockets.add(res.socket);
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          },
        );
        req.on('error', reject);
      });
    try {
      for (let i = 0; i < 3; i++) expect(await get(ALICE)).toBe(200);
      expect(await get(WRONG)).toBe(401);
      expect(await get(`${ALICE.slice(0, -1)}x`)).toBe(401); // same length, last character differs
      expect(await get(`${ALICE}x`)).toBe(401); // the good token and more
      expect(await get(ALICE.slice(0, -1))).toBe(401); // a prefix of it
      expect(await get(ALICE)).toBe(200);
      writeFileSync(join(t.unixDir, 'tokens.json'), JSON.stringify({ users: [{ name: 'bob', token: BOB, role: 'user' }] }));
      t.app.users.reload();
      expect(await get(ALICE)).toBe(401);
      expect(await get(BOB)).toBe(200);
      expect(sockets.size).toBe(1); // every request went over the one connection
    } finally {
      agent.destroy();
    }
  });

  it('an invalid tokens file at start makes buildApp throw, naming the file', async () => {
    const user = (name: string, role = 'user') => ({ tokens: { users: [{ name, token: ALICE, role }] } });
    await expect(startApp({}, user('alice', 'superuser'))).rejects.toThrow(/tokens\.json/);
    await expect(startApp({}, user('a/b'))).rejects.toThrow(/tokens\.json/);
    await expect(startApp({}, { tokens: { users: [{ name: 'alice', token: 'short', role: 'user' }] } })).rejects.toThrow(/tokens\.json/);
    // names that would alias someone else: '.' and '..' are directories under SOCKCTL_UNIX_DIR (the
    // service's own and its parent), and 'admin' is the SOCKCTL_TOKEN user's name (owner of its sockets)
    await expect(startApp({}, user('.'))).rejects.toThrow(/'\.' is not a user name/);
    await expect(startApp({}, user('..'))).rejects.toThrow(/'\.\.' is not a user name/);
    await expect(startApp({}, user('admin'))).rejects.toThrow(/'admin' belongs to the SOCKCTL_TOKEN user/);
    await expect(startApp({}, user('admin', 'admin'))).rejects.toThrow(/SOCKCTL_TOKEN/);
    // without SOCKCTL_TOKEN the name is free
    t = await startApp({ token: '' }, user('admin', 'admin'));
    expect((await call(ALICE, 'GET', '/v1/sockets')).status).toBe(200);
  });

  it("a user cannot take the SOCKCTL_TOKEN admin's name through a reload either", async () => {
    t = await startApp({}, { tokens: TOKENS });
    const s = await create(TOKEN);
    writeFileSync(join(t.unixDir, 'tokens.json'), JSON.stringify({ users: [{ name: 'admin', token: ALICE, role: 'user' }] }));
    expect(() => t.app.users.reload()).toThrow(/admin/);
    expect((await call(ALICE, 'GET', `/v1/sockets/${s.id}`)).status).toBe(404);
  });

  it('tokens never reach the log, from the header or the query (the real entry, logging at trace)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sc-log-'));
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      cwd: process.cwd(),
      env: { ...process.env, SOCKCTL_TOKEN: TOKEN, SOCKCTL_PORT: '0', SOCKCTL_UNIX_DIR: dir, SOCKCTL_LOG_LEVEL: 'trace' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let log = '';
    child.stdout.on('data', (d) => (log += String(d)));
    child.stderr.on('data', (d) => (log += String(d)));
    try {
      const m = await until(() => /listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(log), 'the service listening', 20_000);
      const p = Number(m![1]);
      const get = (path: string, headers: Record<string, string> = {}) =>
        new Promise<number>((resolve, reject) =>
          http.get({ host: '127.0.0.1', port: p, path, headers }, (res) => {
            res.destroy(); // the status is all we need (an SSE stream would stay open)
            resolve(res.statusCode ?? 0);
          }).on('error', reject),
        );
      expect(await get('/v1/sockets', as(TOKEN))).toBe(200);
      expect(await get('/v1/sockets', as(WRONG))).toBe(401);
      expect(await get(`/v1/sockets?token=${WRONG}`)).toBe(401);
      expect(await get(`/v1/events?token=${TOKEN}`, { accept: 'text/event-stream' })).toBe(200);
      const ok1 = await upgrade(`ws://127.0.0.1:${p}/v1/events?token=${TOKEN}`, {}, 20);
      expect(ok1.opened).toBe(true);
      const bad = await upgrade(`ws://127.0.0.1:${p}/v1/events?after=0&token=${WRONG}&label=x`);
      expect(bad.status).toBe(401);
      await until(() => log.includes('token=[redacted]&label=x'), 'the refused upgrade logged');
    } finally {
      child.kill('SIGTERM');
      if (child.exitCode === null) await once(child, 'exit');
      rmSync(dir, { recursive: true, force: true });
    }
    expect(log).toContain('/v1/events');
    expect(log).not.toContain(TOKEN);
    expect(log).not.toContain(WRONG);
  });
});

describe('ports shared through SO_REUSEPORT / SO_REUSEADDR', () => {
  // every socket runs as the service's OS user, so the kernel would let bob join alice's port group and
  // take part of her traffic; the service refuses that across users and still allows it within one
  beforeEach(async () => {
    t = await startApp({}, { tokens: TOKENS });
  });
  afterEach(async () => {
    await t.close();
  });

  it.each([
    ['udp with SO_REUSEPORT', 'dgram', { SO_REUSEPORT: true }],
    ['udp with SO_REUSEADDR', 'dgram', { SO_REUSEADDR: true }],
    ['tcp with SO_REUSEPORT', 'stream', { SO_REUSEPORT: true }],
  ])('%s: another user cannot bind the same port, the same user can', async (_name, type, options) => {
    const a1 = await create(ALICE, { type, options });
    const bound = await ok(ALICE, 'POST', `/v1/sockets/${a1.id}/bind`, { address: '127.0.0.1', port: 0 });
    const port = bound.local.port;
    const b = await create(BOB, { type, options });
    const refused = await call(BOB, 'POST', `/v1/sockets/${b.id}/bind`, { address: '127.0.0.1', port });
    expect(refused.status).toBe(403);
    expect(refused.body).toMatchObject({ code: 'SOCKCTL_FORBIDDEN' });
    expect(refused.body.message).toMatch(/held by another user/);
    const a2 = await create(ALICE, { type, options });
    expect((await ok(ALICE, 'POST', `/v1/sockets/${a2.id}/bind`, { address: '127.0.0.1', port })).local.port).toBe(port);
  });
});

// Bad input over the HTTP API: each gets its documented status and the one error shape of DESIGN.md
// section 4, nothing reaches the kernel, and the service keeps serving without leaking descriptors.
import { VERSION } from '../src/version.js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fdCount, startApp, TOKEN, type TestApp } from './helpers.js';

let t: TestApp;
beforeEach(async () => {
  t = await startApp();
});
afterEach(async () => {
  await t.close();
});

const JSON_TYPE = { 'content-type': 'application/json' };
const OCTETS = { 'content-type': 'application/octet-stream' };

async function create(type = 'stream'): Promise<string> {
  const r = await t.call('POST', '/v1/sockets', { family: 'inet', type });
  expect(r.status).toBe(201);
  return r.body.id;
}

/** A connected TCP pair on loopback: [client, accepted]. */
async function tcpPair(): Promise<[string, string]> {
  const l = await create();
  await t.call('POST', `/v1/sockets/${l}/bind`, { address: '127.0.0.1', port: 0 });
  const port = (await t.call('POST', `/v1/sockets/${l}/listen`, {})).body.local.port;
  const c = await create();
  expect((await t.call('POST', `/v1/sockets/${c}/connect`, { address: '127.0.0.1', port, timeoutMs: 2000 })).status).toBe(200);
  const a = await t.call('POST', `/v1/sockets/${l}/accept`, { timeoutMs: 2000 });
  expect(a.status).toBe(201);
  return [c, a.body.id];
}

/** The peer got nothing: a non-blocking recv finds its queue empty. */
async function expectNothingQueued(id: string): Promise<void> {
  const r = await t.call('POST', `/v1/sockets/${id}/recv`, { timeoutMs: 0 });
  expect(r.status).toBe(504);
  expect(r.body.code).toBe('EAGAIN');
}

/** The error shape: statusCode, error, code, message, and nothing but the documented optional fields. */
function expectError(r: { status: number; body: any }, status: number, code: string, error: string): void {
  expect(r.status).toBe(status);
  expect(r.body).toMatchObject({ statusCode: status, error, code });
  expect(typeof r.body.message).toBe('string');
  expect(r.body.message.length).toBeGreaterThan(0);
  for (const key of Object.keys(r.body)) expect(['statusCode', 'error', 'code', 'message', 'errno', 'syscall', 'socket']).toContain(key);
}

describe('request bodies', () => {
  // A body that is not JSON, under a JSON content type, is fastify's parse error with our shape.
  it('malformed JSON is 400 FST_ERR_CTP_INVALID_JSON_BODY', async () => {
    const r = await t.call('POST', '/v1/sockets', '{"family": "inet", ', JSON_TYPE);
    expectError(r, 400, 'FST_ERR_CTP_INVALID_JSON_BODY', 'Bad Request');
    expect(Object.keys(r.body).sort()).toEqual(['code', 'error', 'message', 'statusCode']);
  });

  // Bodies are validated strictly: an unknown field is refused, not stripped.
  it.each([
    ['/v1/sockets', { family: 'inet', type: 'stream', colour: 'red' }],
    ['/v1/sockets/ID/bind', { address: '127.0.0.1', port: 0, reuse: true }],
    ['/v1/sockets/ID/recv', { maxBytes: 10, wait: 5 }],
  ])('an unknown field in %s is 400 FST_ERR_VALIDATION', async (url, body) => {
    const id = await create();
    const r = await t.call('POST', url.replace('ID', id), body);
    expectError(r, 400, 'FST_ERR_VALIDATION', 'Bad Request');
    expect((await t.call('GET', `/v1/sockets/${id}`)).body).toMatchObject({ state: 'created', local: null });
  });

  // JSON bodies are not coerced: a string is not a number.
  it.each([
    ['bind', { address: '127.0.0.1', port: '80' }],
    ['bind', { address: '127.0.0.1', port: 70000 }],
    ['bind', { address: '127.0.0.1', port: -1 }],
    ['listen', { backlog: -1 }],
    ['listen', { backlog: '4' }],
    ['recv', { timeoutMs: 'x' }],
    ['recv', { maxBytes: 1.5 }],
    ['connect', { address: '127.0.0.1', port: 1, timeoutMs: -5 }],
    ['send', { data: 42 }],
    ['send', { data: 'x', encoding: 'latin1' }],
    ['shutdown', { how: 'SHUT_SIDEWAYS' }],
  ])('%s with %j is 400 FST_ERR_VALIDATION', async (call, body) => {
    const id = await create();
    const r = await t.call('POST', `/v1/sockets/${id}/${call}`, body);
    expectError(r, 400, 'FST_ERR_VALIDATION', 'Bad Request');
    const s = (await t.call('GET', `/v1/sockets/${id}`)).body;
    expect(s).toMatchObject({ state: 'created', local: null, backlog: null, stats: { bytesSent: 0, messagesSent: 0 } });
  });

  // Families, types and protocols are closed lists.
  it.each([
    [{ family: 'AF_BOGUS', type: 'stream' }],
    [{ family: 'inet', type: 'SOCK_BOGUS' }],
    [{ family: 'inet', type: 'stream', protocol: 'IPPROTO_SCTP' }],
    [{ type: 'stream' }],
  ])('create %j is 400 FST_ERR_VALIDATION and makes no socket', async (body) => {
    expectError(await t.call('POST', '/v1/sockets', body), 400, 'FST_ERR_VALIDATION', 'Bad Request');
    expect((await t.call('GET', '/v1/sockets')).body.items).toEqual([]);
  });
});

describe('query strings', () => {
  // Queries are text and are coerced, but still validated; a raw send's destination must be whole,
  // and a JSON send takes its options in the body only.
  it.each([
    ['?port=abc', 'FST_ERR_VALIDATION'],
    ['?address=127.0.0.1&port=70000', 'FST_ERR_VALIDATION'],
    ['?address=127.0.0.1&port=9&colour=red', 'FST_ERR_VALIDATION'],
    ['?port=9', 'SOCKCTL_BAD_REQUEST'],
    ['?address=127.0.0.1&port=9&flags=MSG_BOGUS', 'SOCKCTL_BAD_REQUEST'],
  ])('a raw send with %s is 400 %s', async (query, code) => {
    const id = await create('dgram');
    expectError(await t.call('POST', `/v1/sockets/${id}/send${query}`, Buffer.from('x'), OCTETS), 400, code, 'Bad Request');
    expect((await t.call('GET', `/v1/sockets/${id}`)).body).toMatchObject({ state: 'created', stats: { messagesSent: 0 } });
  });

  it('a JSON send with options in the query is 400', async () => {
    const id = await create('dgram');
    const r = await t.call('POST', `/v1/sockets/${id}/send?timeoutMs=5`, { data: 'x' });
    expectError(r, 400, 'SOCKCTL_BAD_REQUEST', 'Bad Request');
    expect(r.body.message).toBe('with a JSON body, put to/timeoutMs/flags in the body, not the query');
  });

  it.each(['/v1/sockets?state=bogus', '/v1/sockets/ID?view=raw', '/v1/sockets/ID?colour=red'])('GET %s is 400', async (url) => {
    const id = await create();
    expectError(await t.call('GET', url.replace('ID', id)), 400, 'FST_ERR_VALIDATION', 'Bad Request');
  });

  // maxBytes over SOCKCTL_RECV_MAX_BYTES is refused before any recv, naming the setting.
  it('recv maxBytes over the limit is 400 naming SOCKCTL_RECV_MAX_BYTES', async () => {
    const id = await create('dgram');
    const r = await t.call('POST', `/v1/sockets/${id}/recv`, { maxBytes: 16 * 1024 * 1024 + 1 });
    expectError(r, 400, 'SOCKCTL_BAD_REQUEST', 'Bad Request');
    expect(r.body.message).toContain('SOCKCTL_RECV_MAX_BYTES');
  });
});

describe('addresses', () => {
  // The service takes IP literals only (no name resolution); the message names the address.
  it.each(['localhost', '999.1.1.1', 'abc', '127.0.0.1.1', '::g'])('%s is 400 naming the address', async (address) => {
    const id = await create('dgram');
    for (const [call, body] of [
      ['bind', { address, port: 0 }],
      ['connect', { address, port: 9 }],
      ['send', { data: 'x', to: { address, port: 9 } }],
    ] as const) {
      const r = await t.call('POST', `/v1/sockets/${id}/${call}`, body);
      expectError(r, 400, 'SOCKCTL_BAD_REQUEST', 'Bad Request');
      expect(r.body.message).toBe(`'${address}' is not an IPv4 or IPv6 address`);
    }
    expect((await t.call('GET', `/v1/sockets/${id}`)).body).toMatchObject({ state: 'created', local: null });
  });

  // An inet socket takes {address, port}; half an address or a path is a 400, before any syscall.
  it('refuses half an address and a path on an inet socket', async () => {
    const id = await create();
    const half = await t.call('POST', `/v1/sockets/${id}/bind`, { address: '127.0.0.1' });
    expectError(half, 400, 'SOCKCTL_BAD_REQUEST', 'Bad Request');
    expect(half.body.message).toBe('an inet socket takes {address, port}; both are required');
    const path = await t.call('POST', `/v1/sockets/${id}/bind`, { path: 'x.sock' });
    expectError(path, 400, 'SOCKCTL_BAD_REQUEST', 'Bad Request');
  });
});

describe('encodings', () => {
  // Malformed base64 or hex is refused whole (never silently truncated) and nothing is sent.
  it.each([
    ['base64', 'abc'],
    ['base64', 'ab!='],
    ['base64', 'aGVsbG8=x'],
    ['hex', 'abc'],
    ['hex', 'zz'],
    ['hex', '0x41'],
  ])('%s %j is 400 SOCKCTL_BAD_ENCODING and nothing reaches the peer', async (encoding, data) => {
    const [c, a] = await tcpPair();
    const r = await t.call('POST', `/v1/sockets/${c}/send`, { data, encoding });
    expectError(r, 400, 'SOCKCTL_BAD_ENCODING', 'Bad Request');
    expect(r.body.message).toContain(encoding);
    await expectNothingQueued(a);
    expect((await t.call('GET', `/v1/sockets/${c}`)).body.stats.bytesSent).toBe(0);
  });

  // An empty raw body is a send(2) of zero bytes: on TCP it returns 0 and queues nothing.
  it('a raw octet-stream send with an empty or absent body sends 0 bytes', async () => {
    const [c, a] = await tcpPair();
    expect((await t.call('POST', `/v1/sockets/${c}/send`, Buffer.alloc(0), OCTETS)).body).toEqual({ bytes: 0 });
    expect((await t.call('POST', `/v1/sockets/${c}/send`, undefined, OCTETS)).body).toEqual({ bytes: 0 });
    await expectNothingQueued(a);
    // and a non-empty raw body still goes through whole
    expect((await t.call('POST', `/v1/sockets/${c}/send`, Buffer.from([1, 2, 3]), OCTETS)).body).toEqual({ bytes: 3 });
    const r = await t.call('POST', `/v1/sockets/${a}/recv`, { encoding: 'hex', timeoutMs: 2000 });
    expect(r.body).toEqual({ data: '010203', encoding: 'hex', bytes: 3, eof: false });
  });
});

describe('body limit', () => {
  // Over bodyLimit, JSON and raw bodies are 413 before the handler runs: nothing is sent.
  it('a 10 KB body over a 4096-byte limit is 413, JSON and octet-stream alike', async () => {
    await t.close();
    t = await startApp({ bodyLimit: 4096 });
    const [c, a] = await tcpPair();
    const json = await t.call('POST', `/v1/sockets/${c}/send`, { data: 'x'.repeat(10 * 1024) });
    expectError(json, 413, 'FST_ERR_CTP_BODY_TOO_LARGE', 'Payload Too Large');
    const raw = await t.call('POST', `/v1/sockets/${c}/send`, Buffer.alloc(10 * 1024, 7), OCTETS);
    expectError(raw, 413, 'FST_ERR_CTP_BODY_TOO_LARGE', 'Payload Too Large');
    await expectNothingQueued(a);
    // just under the limit still works
    expect((await t.call('POST', `/v1/sockets/${c}/send`, Buffer.alloc(4000, 7), OCTETS)).body).toEqual({ bytes: 4000 });
  });

  // The same over a real HTTP connection (Content-Length checked by the server).
  it('answers 413 to a real HTTP client', async () => {
    await t.close();
    t = await startApp({ bodyLimit: 4096 });
    const [c] = await tcpPair();
    await t.app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = t.app.server.address() as { port: number };
    const r = await fetch(`http://127.0.0.1:${port}/v1/sockets/${c}/send`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, ...OCTETS },
      body: new Uint8Array(10 * 1024),
    });
    expect(r.status).toBe(413);
    expect(await r.json()).toMatchObject({ statusCode: 413, code: 'FST_ERR_CTP_BODY_TOO_LARGE' });
  });
});

describe('authentication and routes', () => {
  const inject = (url: string, headers: Record<string, string> = {}, method: 'GET' | 'POST' = 'GET') =>
    t.app.inject({ method, url, headers, ...(method === 'POST' ? { payload: { family: 'inet', type: 'stream' } } : {}) });

  // No token, a wrong one, another scheme, or ?token= on a REST route: 401 with a Bearer challenge.
  it.each([
    ['no token', '/v1/sockets', {}],
    ['a wrong token', '/v1/sockets', { authorization: 'Bearer nope' }],
    ['a Basic header', '/v1/sockets', { authorization: `Basic ${Buffer.from(`u:${TOKEN}`).toString('base64')}` }],
    ['?token= on a REST route', `/v1/sockets?token=${TOKEN}`, {}],
  ])('%s is 401 SOCKCTL_UNAUTHORIZED', async (_what, url, headers) => {
    for (const method of ['GET', 'POST'] as const) {
      const r = await inject(url, headers, method);
      expect(r.statusCode).toBe(401);
      expect(r.headers['www-authenticate']).toBe('Bearer realm="sockctl"');
      expect(r.json()).toEqual({
        statusCode: 401,
        error: 'Unauthorized',
        code: 'SOCKCTL_UNAUTHORIZED',
        message: 'a valid bearer token is required',
      });
    }
    expect((await t.call('GET', '/v1/sockets')).body.items).toEqual([]);
  });

  // Health is the one route without a token.
  it('GET /v1/health needs no token', async () => {
    const r = await inject('/v1/health');
    expect(r.statusCode).toBe(200);
    // the service's own version (package.json), not fastify's
    expect(r.json()).toMatchObject({ status: 'ok', sockets: 0, version: VERSION });
  });

  // Unknown routes and unknown ids are both 404, with different codes.
  it('an unknown route is 404 FST_ERR_NOT_FOUND, an unknown id 404 SOCKCTL_NOT_FOUND', async () => {
    const route = await t.call('GET', '/v1/nothing-here');
    expectError(route, 404, 'FST_ERR_NOT_FOUND', 'Not Found');
    expect(route.body.message).toBe('Route GET:/v1/nothing-here not found');
    const id = await t.call('POST', '/v1/sockets/no-such-id/recv', {});
    expectError(id, 404, 'SOCKCTL_NOT_FOUND', 'Not Found');
    expect(id.body.socket).toBe('no-such-id');
  });
});

describe('after bad input', () => {
  // A battery of refused requests leaves the service serving and the process with as many fds as before.
  it('keeps serving and leaks no descriptor', async () => {
    const before = fdCount();
    const id = await create();
    const bad: [string, string, unknown, Record<string, string>?][] = [
      ['POST', '/v1/sockets', '{"family":', JSON_TYPE],
      ['POST', '/v1/sockets', { family: 'AF_BOGUS', type: 'stream' }],
      ['POST', '/v1/sockets', { family: 'inet', type: 'dgram', options: { TCP_NODELAY: true } }],
      ['POST', `/v1/sockets/${id}/bind`, { address: 'localhost', port: 80 }],
      ['POST', `/v1/sockets/${id}/bind`, { address: '127.0.0.1', port: 70000 }],
      ['POST', `/v1/sockets/${id}/send`, { data: '!!', encoding: 'base64' }],
      ['POST', `/v1/sockets/${id}/recv`, { timeoutMs: 'x' }],
      ['PATCH', `/v1/sockets/${id}/options`, { SO_TYPE: 'SOCK_RAW' }],
      ['GET', '/v1/nowhere', undefined],
      ['POST', '/v1/sockets/unknown/listen', {}],
    ];
    for (let round = 0; round < 20; round++)
      for (const [method, url, body, headers] of bad) expect((await t.call(method as 'GET', url, body, headers)).status).toBeGreaterThanOrEqual(400);
    // a normal create/close still works
    const s = await create('dgram');
    expect((await t.call('POST', `/v1/sockets/${s}/bind`, { address: '127.0.0.1', port: 0 })).status).toBe(200);
    expect((await t.call('DELETE', `/v1/sockets/${s}`)).body.state).toBe('closed');
    expect((await t.call('DELETE', `/v1/sockets/${id}`)).body.state).toBe('closed');
    expect(fdCount()).toBe(before);
    const health = await t.call('GET', '/v1/health');
    expect(health.body).toMatchObject({ status: 'ok', sockets: 0 });
  });
});

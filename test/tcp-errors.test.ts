// TCP errors over the HTTP API on real loopback sockets: each errno comes from the step that causes it
// (DESIGN.md sections 3 and 4), with the full error shape {statusCode, error, code, errno, syscall,
// message, socket}. errno numbers are checked against os.constants.errno, not copied from the service.
import { constants } from 'node:os';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startApp, until, type Reply, type TestApp } from './helpers.js';
import { closedPort } from './ports.js';

let t: TestApp;
beforeEach(async () => {
  t = await startApp();
});
afterEach(async () => {
  await t.close();
});

type Addr = { address: string; port: number };
const ERRNO = constants.errno as Record<string, number>;
const STATUS_TEXT: Record<number, string> = { 404: 'Not Found', 409: 'Conflict', 502: 'Bad Gateway', 504: 'Gateway Timeout' };

/** The whole error body of a syscall failure, exactly. */
function expectSysError(r: Reply<any>, status: number, code: string, syscall: string, socket: string, message?: string): void {
  expect(r.status).toBe(status);
  expect(r.body).toEqual({
    statusCode: status,
    error: STATUS_TEXT[status],
    code,
    errno: ERRNO[code],
    syscall,
    socket,
    message: message ?? expect.any(String),
  });
}

async function create(type = 'stream'): Promise<string> {
  const r = await t.call('POST', '/v1/sockets', { family: 'inet', type });
  expect(r.status).toBe(201);
  return r.body.id;
}
const get = async (id: string) => (await t.call('GET', `/v1/sockets/${id}`)).body;
const post = (id: string, op: string, body: object = {}) => t.call('POST', `/v1/sockets/${id}/${op}`, body);

async function bound(): Promise<{ id: string; local: Addr }> {
  const id = await create();
  const r = await post(id, 'bind', { address: '127.0.0.1', port: 0 });
  expect(r.status).toBe(200);
  return { id, local: r.body.local };
}

async function listening(backlog = 4): Promise<{ id: string; local: Addr }> {
  const l = await bound();
  expect((await post(l.id, 'listen', { backlog })).status).toBe(200);
  return l;
}

/** A connected pair: client c and the accepted socket a. */
async function pair(): Promise<{ c: string; a: string }> {
  const l = await listening();
  const c = await create();
  expect((await post(c, 'connect', l.local)).status).toBe(200);
  const a = await post(l.id, 'accept', { timeoutMs: 1000 });
  expect(a.status).toBe(201);
  return { c, a: a.body.id };
}


describe('errno at the right step', () => {
  // bind(2) itself fails when another socket holds the port; the service does not defer the bind.
  it('binding a held port gives 409 EADDRINUSE from bind, and the socket stays created', async () => {
    const holder = await listening();
    const b = await create();
    const r = await post(b, 'bind', holder.local);
    expectSysError(r, 409, 'EADDRINUSE', 'bind', b, `bind 127.0.0.1:${holder.local.port}: address already in use`);
    expect(await get(b)).toMatchObject({ state: 'created', local: null });
  });

  // A native fd, unlike libuv's, starts with SO_REUSEADDR off (DESIGN.md section 1).
  it('a fresh TCP socket reports SO_REUSEADDR false', async () => {
    const r = await t.call('GET', `/v1/sockets/${await create()}/options`);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ SO_REUSEADDR: false, SO_REUSEPORT: false, SO_TYPE: 'SOCK_STREAM', SO_ERROR: 0, SO_ACCEPTCONN: false });
  });

  // The refusal comes from connect; the socket returns to created (or bound) with lastError, and a new
  // connect goes to the kernel as is (the same refusal again, not ECONNABORTED).
  it('connect to a closed loopback port gives 502 ECONNREFUSED and returns the socket to created', async () => {
    const port = closedPort();
    const c = await create();
    const r = await post(c, 'connect', { address: '127.0.0.1', port });
    expectSysError(r, 502, 'ECONNREFUSED', 'connect', c, `connect 127.0.0.1:${port}: connection refused`);
    const after = await get(c);
    expect(after.state).toBe('created');
    expect(after.remote).toBeNull();
    expect(after.lastError).toEqual({ code: 'ECONNREFUSED', errno: ERRNO.ECONNREFUSED, syscall: 'connect', message: expect.any(String) });
    expectSysError(await post(c, 'connect', { address: '127.0.0.1', port }), 502, 'ECONNREFUSED', 'connect', c);

    // a socket the user bound returns to bound
    const b = await bound();
    expectSysError(await post(b.id, 'connect', { address: '127.0.0.1', port }), 502, 'ECONNREFUSED', 'connect', b.id);
    expect((await get(b.id)).state).toBe('bound');
  });

  // A non-blocking connect (timeoutMs 0) that is refused later: 202 now, then created with lastError.
  it('a refused non-blocking connect answers 202, then the socket is created with lastError ECONNREFUSED', async () => {
    const port = closedPort();
    const c = await create();
    const r = await post(c, 'connect', { address: '127.0.0.1', port, timeoutMs: 0 });
    if (r.status === 202) expect(r.body.state).toBe('connecting');
    else expectSysError(r, 502, 'ECONNREFUSED', 'connect', c);
    const after = await until(async () => {
      const s = await get(c);
      return s.state === 'created' && s;
    }, 'the background connect to fail');
    expect(after.lastError).toMatchObject({ code: 'ECONNREFUSED', errno: ERRNO.ECONNREFUSED, syscall: 'connect' });
  });

  it('recv on an unconnected (created or listening) TCP socket gives 409 ENOTCONN', async () => {
    const c = await create();
    expectSysError(await post(c, 'recv', {}), 409, 'ENOTCONN', 'recvmsg', c, 'recv: transport endpoint is not connected');
    const l = await listening();
    expectSysError(await post(l.id, 'recv', { timeoutMs: 0 }), 409, 'ENOTCONN', 'recvmsg', l.id);
  });

  // Linux answers EPIPE (not ENOTCONN) for send on a TCP socket that never connected.
  it('send on an unconnected TCP socket gives 409 EPIPE', async () => {
    const c = await create();
    expectSysError(await post(c, 'send', { data: 'x' }), 409, 'EPIPE', 'send', c, 'send: broken pipe');
    const raw = await t.call('POST', `/v1/sockets/${c}/send`, Buffer.from('x'), { 'content-type': 'application/octet-stream' });
    expectSysError(raw, 409, 'EPIPE', 'send', c);
  });

  it('listen on a UDP socket gives 409 EOPNOTSUPP', async () => {
    const u = await create('dgram');
    expectSysError(await post(u, 'listen', { backlog: 4 }), 409, 'EOPNOTSUPP', 'listen', u, 'listen backlog 4: operation not supported');
    expect((await get(u)).state).toBe('created');
  });
});

describe('after the peer reset (DELETE ?reset=true sends RST)', () => {
  /** A pair whose accepted side closed with RST, once the client's kernel has taken the RST. */
  async function resetPair(): Promise<string> {
    const { c, a } = await pair();
    const closed = await t.call('DELETE', `/v1/sockets/${a}?reset=true`);
    expect(closed.status).toBe(200);
    expect(closed.body.state).toBe('closed');
    await until(async () => (await get(c)).kernel.tcpState === 'CLOSE', 'the client to take the RST');
    return c;
  }

  // As in C: one ECONNRESET, then EOF. The state stays connected (a peer's RST closes nothing), remote is null.
  it('the first recv gives 502 ECONNRESET, the next one EOF; remote becomes null', async () => {
    const c = await resetPair();
    expectSysError(await post(c, 'recv', { timeoutMs: 0 }), 502, 'ECONNRESET', 'recvmsg', c, 'recv: connection reset by peer');
    expect((await post(c, 'recv', { timeoutMs: 0 })).body).toEqual({ data: '', encoding: 'utf8', bytes: 0, eof: true });
    const s = await get(c);
    expect(s).toMatchObject({ state: 'connected', remote: null });
    expect(s.lastError).toMatchObject({ code: 'ECONNRESET', errno: ERRNO.ECONNRESET });
  });

  // The kernel reports the pending ECONNRESET to the first send, then EPIPE (what python's socket sees too).
  it('send gives 502 ECONNRESET first, then 409 EPIPE', async () => {
    const c = await resetPair();
    expectSysError(await post(c, 'send', { data: 'x', timeoutMs: 0 }), 502, 'ECONNRESET', 'send', c);
    expectSysError(await post(c, 'send', { data: 'x', timeoutMs: 0 }), 409, 'EPIPE', 'send', c);
    expect((await get(c)).state).toBe('connected');
  });
});

describe('waits that end with nothing done', () => {
  it('accept with nothing pending gives 504 EAGAIN at timeoutMs 0 and after timeoutMs 200', async () => {
    const l = await listening();
    expectSysError(await post(l.id, 'accept', { timeoutMs: 0 }), 504, 'EAGAIN', 'accept4', l.id);
    const started = Date.now();
    expectSysError(await post(l.id, 'accept', { timeoutMs: 200 }), 504, 'EAGAIN', 'accept4', l.id);
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(190);
    expect(waited).toBeLessThan(2000);
    expect((await get(l.id)).state).toBe('listening');
  });

  it('recv with nothing queued gives 504 EAGAIN at timeoutMs 0', async () => {
    const { c } = await pair();
    expectSysError(await post(c, 'recv', { timeoutMs: 0 }), 504, 'EAGAIN', 'recvmsg', c, 'recv: resource temporarily unavailable');
  });
});

describe('closed and unknown sockets', () => {
  // A closed socket answers EBADF from its own state, for every call, and stays readable with GET.
  it('every operation on a closed socket gives 409 EBADF', async () => {
    const { c } = await pair();
    expect((await t.call('DELETE', `/v1/sockets/${c}`)).status).toBe(200);
    const to = { address: '127.0.0.1', port: 9 };
    const calls: [string, string, unknown, string][] = [
      ['POST', 'bind', { address: '127.0.0.1', port: 0 }, 'bind'],
      ['POST', 'listen', { backlog: 1 }, 'listen'],
      ['POST', 'accept', { timeoutMs: 0 }, 'accept4'],
      ['POST', 'connect', to, 'connect'],
      ['POST', 'send', { data: 'x' }, 'send'],
      ['POST', 'recv', { timeoutMs: 0 }, 'recvmsg'],
      ['POST', 'shutdown', { how: 'SHUT_RDWR' }, 'shutdown'],
      ['GET', 'options', undefined, 'getsockopt'],
      ['PATCH', 'options', { SO_REUSEADDR: true }, 'setsockopt'],
    ];
    for (const [method, op, body, syscall] of calls) {
      const r = await t.call(method as 'POST', `/v1/sockets/${c}/${op}`, body);
      expectSysError(r, 409, 'EBADF', syscall, c, `${syscall}: socket ${c} is closed: bad file descriptor`);
    }
    expectSysError(await t.call('DELETE', `/v1/sockets/${c}`), 409, 'EBADF', 'close', c);
    expect((await get(c)).state).toBe('closed');
  });

  it('unknown ids give 404 SOCKCTL_NOT_FOUND on every route', async () => {
    const id = 'no-such-socket';
    const routes: [string, string, unknown][] = [
      ['GET', '', undefined],
      ['DELETE', '', undefined],
      ['POST', '/bind', { address: '127.0.0.1', port: 0 }],
      ['POST', '/listen', {}],
      ['POST', '/accept', { timeoutMs: 0 }],
      ['POST', '/connect', { address: '127.0.0.1', port: 9 }],
      ['POST', '/send', { data: 'x' }],
      ['POST', '/recv', {}],
      ['POST', '/shutdown', { how: 'SHUT_WR' }],
      ['GET', '/options', undefined],
      ['PATCH', '/options', { TCP_NODELAY: true }],
    ];
    for (const [method, suffix, body] of routes) {
      const r = await t.call(method as 'GET', `/v1/sockets/${id}${suffix}`, body);
      expect({ route: `${method} ${suffix}`, status: r.status, body: r.body }).toEqual({
        route: `${method} ${suffix}`,
        status: 404,
        body: { statusCode: 404, error: 'Not Found', code: 'SOCKCTL_NOT_FOUND', message: `no socket with id '${id}'`, socket: id },
      });
    }
  });
});

describe('a connect whose wait ends', () => {
  // A listener whose queue is full drops further SYNs, so the client stays in SYN_SENT: the connect's wait
  // ends with 504 ETIMEDOUT, the socket stays `connecting` (the kernel keeps trying), a non-blocking connect
  // then gets EALREADY, and once the listener accepts, the kernel completes it and the state follows.
  it('gives ETIMEDOUT, stays connecting, then EALREADY, and completes after an accept', async () => {
    const l = await listening(1); // Linux queues backlog + 1 = 2
    const fill: string[] = [];
    for (let i = 0; i < 2; i++) {
      const f = await create();
      expect((await post(f, 'connect', { ...l.local, timeoutMs: 1000 })).status).toBe(200);
      fill.push(f);
    }
    const c = await create();
    const r = await post(c, 'connect', { ...l.local, timeoutMs: 300 });
    expectSysError(r, 504, 'ETIMEDOUT', 'connect', c);
    expect(r.body.message, r.body.message).toMatch(/still in progress after 300 ms\): connection timed out$/);
    expect((await get(c)).state).toBe('connecting');
    expect((await get(c)).kernel.tcpState).toBe('SYN_SENT');
    expectSysError(await post(c, 'connect', { ...l.local, timeoutMs: 0 }), 409, 'EALREADY', 'connect', c);
    for (let i = 0; i < 2; i++) expect((await post(l.id, 'accept', { timeoutMs: 1000 })).status).toBe(201);
    // the SYN is retransmitted (1 s, then 2 s): wait for it with a blocking connect, which now succeeds
    const done = await post(c, 'connect', { ...l.local, timeoutMs: 5000 });
    expect(done.status).toBe(200);
    expect(done.body.state).toBe('connected');
  });
});

// UDP over the HTTP API on real loopback sockets: sendto/recvfrom, connected UDP, datagram boundaries,
// truncation (MSG_TRUNC), MSG_PEEK, implicit bind, raw octet bodies, ICMP port unreachable, EAGAIN.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startApp, TOKEN, type TestApp } from './helpers.js';
import { closedPort } from './ports.js';

let t: TestApp;
beforeEach(async () => {
  t = await startApp();
});
afterEach(async () => {
  await t.close();
});

type Addr = { address: string; port: number };

async function create(): Promise<{ id: string; local: Addr | null; state: string }> {
  const r = await t.call('POST', '/v1/sockets', { family: 'inet', type: 'dgram' });
  expect(r.status).toBe(201);
  expect(r.body.type).toBe('SOCK_DGRAM');
  expect(r.body.protocol).toBe('IPPROTO_UDP');
  return r.body;
}

/** A UDP socket bound to 127.0.0.1 on an ephemeral port; returns its id and local address. */
async function bound(): Promise<{ id: string; local: Addr }> {
  const s = await create();
  const r = await t.call('POST', `/v1/sockets/${s.id}/bind`, { address: '127.0.0.1', port: 0 });
  expect(r.status).toBe(200);
  expect(r.body.state).toBe('bound');
  expect(r.body.local.address).toBe('127.0.0.1');
  expect(r.body.local.port).toBeGreaterThan(0);
  return { id: s.id, local: r.body.local };
}

const send = (id: string, body: object) => t.call('POST', `/v1/sockets/${id}/send`, body);
const recv = (id: string, body: object = {}) => t.call('POST', `/v1/sockets/${id}/recv`, body);


describe('UDP sendto / recvfrom', () => {
  // recvfrom reports the sender as getsockname() shows it on the sending socket.
  it('delivers a datagram between two bound sockets and reports from = the sender local', async () => {
    const a = await bound();
    const b = await bound();
    const s = await send(a.id, { data: 'ping', to: b.local });
    expect(s.status).toBe(200);
    expect(s.body).toEqual({ bytes: 4 });
    const r = await recv(b.id, { timeoutMs: 1000 });
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ data: 'ping', encoding: 'utf8', bytes: 4, eof: false, from: a.local, truncated: false });
    // and back the other way
    expect((await send(b.id, { data: 'cG9uZw==', encoding: 'base64', to: a.local })).body).toEqual({ bytes: 4 });
    const back = await recv(a.id, { timeoutMs: 1000, encoding: 'hex' });
    expect(back.body).toMatchObject({ data: '706f6e67', encoding: 'hex', bytes: 4, from: b.local });
    const stats = (await t.call('GET', `/v1/sockets/${a.id}`)).body.stats;
    expect(stats).toEqual({ bytesSent: 4, bytesReceived: 4, messagesSent: 1, messagesReceived: 1 });
  });

  // sendto on an unbound socket makes the kernel bind it (INADDR_ANY, ephemeral port), as in C.
  it('binds an unbound socket implicitly on sendto', async () => {
    const a = await create();
    expect(a.local).toBeNull();
    expect(a.state).toBe('created');
    const b = await bound();
    expect((await send(a.id, { data: 'x', to: b.local })).status).toBe(200);
    const after = (await t.call('GET', `/v1/sockets/${a.id}`)).body;
    expect(after.state).toBe('bound');
    expect(after.local.address).toBe('0.0.0.0');
    expect(after.local.port).toBeGreaterThan(0);
    const r = await recv(b.id, { timeoutMs: 1000 });
    expect(r.body.from).toEqual({ address: '127.0.0.1', port: after.local.port });
  });

  // One recv returns one datagram: three sends of different sizes come back as three recvs of those sizes.
  it('keeps message boundaries', async () => {
    const a = await bound();
    const b = await bound();
    const sizes = [1, 1500, 9000];
    for (const [i, n] of sizes.entries())
      expect((await send(a.id, { data: String.fromCharCode(97 + i).repeat(n), to: b.local })).body).toEqual({ bytes: n });
    for (const [i, n] of sizes.entries()) {
      const r = await recv(b.id, { timeoutMs: 1000 });
      expect(r.body.bytes).toBe(n);
      expect(r.body.data).toBe(String.fromCharCode(97 + i).repeat(n));
      expect(r.body.truncated).toBe(false);
    }
    expect((await recv(b.id, { timeoutMs: 0 })).body.code).toBe('EAGAIN');
  });

  // MSG_TRUNC: the first maxBytes come back, the rest of that datagram is discarded by the kernel.
  it('truncates a datagram larger than maxBytes and drops its tail', async () => {
    const a = await bound();
    const b = await bound();
    await send(a.id, { data: '0123456789abcdefghij', to: b.local });
    await send(a.id, { data: 'next', to: b.local });
    const r = await recv(b.id, { maxBytes: 10, timeoutMs: 1000 });
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ data: '0123456789', encoding: 'utf8', bytes: 10, eof: false, from: a.local, truncated: true });
    const n = await recv(b.id, { maxBytes: 10, timeoutMs: 1000 });
    expect(n.body).toEqual({ data: 'next', encoding: 'utf8', bytes: 4, eof: false, from: a.local, truncated: false });
  });

  // A zero-byte datagram is data, not EOF (DESIGN.md section 3, fidelity rules).
  it('receives a zero-length datagram as bytes 0, eof false', async () => {
    const a = await bound();
    const b = await bound();
    expect((await send(a.id, { data: '', to: b.local })).body).toEqual({ bytes: 0 });
    const r = await recv(b.id, { timeoutMs: 1000 });
    expect(r.body).toEqual({ data: '', encoding: 'utf8', bytes: 0, eof: false, from: a.local, truncated: false });
  });

  // MSG_PEEK returns the datagram without consuming it.
  it('peek leaves the datagram queued', async () => {
    const a = await bound();
    const b = await bound();
    await send(a.id, { data: 'once', to: b.local });
    const p = await recv(b.id, { peek: true, timeoutMs: 1000 });
    expect(p.body).toMatchObject({ data: 'once', bytes: 4, from: a.local });
    const r = await recv(b.id, { timeoutMs: 0 });
    expect(r.body).toMatchObject({ data: 'once', bytes: 4, from: a.local });
    expect((await recv(b.id, { timeoutMs: 0 })).status).toBe(504);
    expect((await t.call('GET', `/v1/sockets/${b.id}`)).body.stats.messagesReceived).toBe(1);
  });

  // Raw bodies: the destination in the query, and recv's metadata in Sockctl-* headers.
  it('sends a raw octet-stream body to ?address=&port= and receives raw bytes with headers', async () => {
    const a = await bound();
    const b = await bound();
    const bytes = Buffer.from([0, 1, 2, 0xfe, 0xff, 0x80]);
    const s = await t.call('POST', `/v1/sockets/${a.id}/send?address=127.0.0.1&port=${b.local.port}`, bytes, {
      'content-type': 'application/octet-stream',
    });
    expect(s.status).toBe(200);
    expect(s.body).toEqual({ bytes: 6 });
    const r = await t.call('POST', `/v1/sockets/${b.id}/recv`, { maxBytes: 4, timeoutMs: 1000 }, { accept: 'application/octet-stream' });
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('application/octet-stream');
    expect(r.raw.equals(bytes.subarray(0, 4))).toBe(true);
    expect(r.headers['sockctl-from']).toBe(`127.0.0.1:${a.local.port}`);
    expect(r.headers['sockctl-truncated']).toBe('true');
    expect(r.headers['sockctl-eof']).toBe('false');
  });

  // send(2) without a destination on an unconnected UDP socket: EDESTADDRREQ (409); a datagram over
  // the UDP maximum (65507 bytes of payload on IPv4): EMSGSIZE, passed through as a 400.
  it('passes EDESTADDRREQ and EMSGSIZE through', async () => {
    const a = await bound();
    const b = await bound();
    const noDest = await send(a.id, { data: 'x' });
    expect(noDest.status).toBe(409);
    expect(noDest.body).toMatchObject({ code: 'EDESTADDRREQ', errno: 89, syscall: 'send' });
    const big = await send(a.id, { data: 'x'.repeat(65_508), to: b.local });
    expect(big.status).toBe(400);
    expect(big.body).toMatchObject({ code: 'EMSGSIZE', errno: 90, syscall: 'sendto' });
    expect((await send(a.id, { data: 'x'.repeat(65_507), to: b.local })).body).toEqual({ bytes: 65_507 });
    expect((await recv(b.id, { timeoutMs: 1000 })).body.bytes).toBe(65_507);
  });

  // With nothing queued, a non-blocking recv fails as recvfrom(2) would: EAGAIN, as 504.
  it('recv with nothing queued and timeoutMs 0 gives 504 EAGAIN', async () => {
    const b = await bound();
    const r = await recv(b.id, { timeoutMs: 0 });
    expect(r.status).toBe(504);
    expect(r.body).toMatchObject({ statusCode: 504, error: 'Gateway Timeout', code: 'EAGAIN', errno: 11, socket: b.id });
  });
});

describe('connected UDP', () => {
  // connect() sets the default destination and filters what the socket receives to its peer.
  it('sends without `to`, receives from the peer only', async () => {
    const a = await bound();
    const b = await bound();
    const third = await bound();
    const c = await t.call('POST', `/v1/sockets/${a.id}/connect`, { address: '127.0.0.1', port: b.local.port });
    expect(c.status).toBe(200);
    expect(c.body.state).toBe('connected');
    expect(c.body.remote).toEqual(b.local);
    expect(c.body.local).toEqual(a.local);

    expect((await send(a.id, { data: 'to-peer' })).body).toEqual({ bytes: 7 });
    expect((await recv(b.id, { timeoutMs: 1000 })).body).toMatchObject({ data: 'to-peer', from: a.local });

    // the third socket's datagram is sent (the kernel accepts it) but never delivered to a connected socket
    expect((await send(third.id, { data: 'stranger', to: a.local })).body).toEqual({ bytes: 8 });
    expect((await send(b.id, { data: 'from-peer', to: a.local })).body).toEqual({ bytes: 9 });
    const r = await recv(a.id, { timeoutMs: 1000 });
    expect(r.body).toEqual({ data: 'from-peer', encoding: 'utf8', bytes: 9, eof: false, from: b.local, truncated: false });
    expect((await recv(a.id, { timeoutMs: 0 })).body.code).toBe('EAGAIN');
  });

  // connect on an unbound UDP socket binds it implicitly; connecting again just changes the peer.
  it('binds implicitly on connect and can be reconnected to another peer', async () => {
    const a = await create();
    const b = await bound();
    const c = await bound();
    const first = await t.call('POST', `/v1/sockets/${a.id}/connect`, b.local);
    expect(first.body.state).toBe('connected');
    expect(first.body.local).toEqual({ address: '127.0.0.1', port: expect.any(Number) });
    expect(first.body.local.port).toBeGreaterThan(0);
    const second = await t.call('POST', `/v1/sockets/${a.id}/connect`, c.local);
    expect(second.status).toBe(200);
    expect(second.body).toMatchObject({ state: 'connected', remote: c.local, local: first.body.local });
    await send(a.id, { data: 'to-c' });
    expect((await recv(c.id, { timeoutMs: 1000 })).body).toMatchObject({ data: 'to-c', from: first.body.local });
    expect((await recv(b.id, { timeoutMs: 0 })).body.code).toBe('EAGAIN');
  });

  // Loopback answers a datagram to a closed port with ICMP port unreachable; a connected UDP socket
  // reports it as ECONNREFUSED on its next call, and the service records it in lastError.
  it('reports ECONNREFUSED on recv after sending to a closed port', async () => {
    const port = closedPort();
    const a = await bound();
    expect((await t.call('POST', `/v1/sockets/${a.id}/connect`, { address: '127.0.0.1', port })).status).toBe(200);
    expect((await send(a.id, { data: 'anyone?' })).body).toEqual({ bytes: 7 });
    const r = await recv(a.id, { timeoutMs: 2000 });
    expect(r.status).toBe(502);
    expect(r.body).toMatchObject({ statusCode: 502, error: 'Bad Gateway', code: 'ECONNREFUSED', errno: 111, socket: a.id });
    const after = (await t.call('GET', `/v1/sockets/${a.id}`)).body;
    expect(after.lastError).toMatchObject({ code: 'ECONNREFUSED', errno: 111 });
    // the peer's refusal does not close the descriptor
    expect(after.state).toBe('connected');
    // the error was consumed by that recv: the next one just finds nothing
    expect((await recv(a.id, { timeoutMs: 0 })).body.code).toBe('EAGAIN');
  });

  // A connected socket's peer answers through a real HTTP client: raw sendto with ?address=, raw recv.
  it('works over a real HTTP connection with raw bodies', async () => {
    const a = await bound();
    const b = await bound();
    await t.app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = t.app.server.address() as { port: number };
    const base = `http://127.0.0.1:${port}/v1/sockets`;
    const auth = { authorization: `Bearer ${TOKEN}` };
    const s = await fetch(`${base}/${a.id}/send?address=127.0.0.1&port=${b.local.port}`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/octet-stream' },
      body: new Uint8Array([104, 105]),
    });
    expect(s.status).toBe(200);
    expect(await s.json()).toEqual({ bytes: 2 });
    const r = await fetch(`${base}/${b.id}/recv`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json', accept: 'application/octet-stream' },
      body: JSON.stringify({ timeoutMs: 1000 }),
    });
    expect(r.status).toBe(200);
    expect(r.headers.get('sockctl-from')).toBe(`127.0.0.1:${a.local.port}`);
    expect(r.headers.get('sockctl-truncated')).toBe('false');
    expect(Buffer.from(await r.arrayBuffer()).toString()).toBe('hi');
  });
});

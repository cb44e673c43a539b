// IPv6 over the HTTP API: TCP and UDP on ::1, IPV6_V6ONLY and the dual-stack port space, and the raw
// sockaddr bytes (?view=sockaddr) of sockaddr_in6 and sockaddr_in.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startApp, WILDCARD_BIND_POLICY, type TestApp } from './helpers.js';

let t: TestApp;
beforeEach(async () => {
  t = await startApp();
});
afterEach(async () => {
  await t.close();
});

type Addr = { address: string; port: number };

async function create(family: string, type: string, extra: object = {}): Promise<string> {
  const r = await t.call('POST', '/v1/sockets', { family, type, ...extra });
  expect(r.status).toBe(201);
  return r.body.id;
}

async function bind(id: string, address: string, port = 0) {
  return t.call('POST', `/v1/sockets/${id}/bind`, { address, port });
}

/** Big-endian hex of a port, as htons() puts it in a sockaddr. */
const portHex = (port: number) => port.toString(16).padStart(4, '0');

describe('TCP on ::1', () => {
  // The whole lab session on IPv6 loopback, addresses reported as the kernel's "::1".
  it('binds, listens, connects, accepts and moves bytes, with ::1 addresses', async () => {
    const l = await create('AF_INET6', 'SOCK_STREAM');
    const b = await bind(l, '::1');
    expect(b.status).toBe(200);
    expect(b.body.family).toBe('AF_INET6');
    expect(b.body.local.address).toBe('::1');
    const port: number = b.body.local.port;
    expect(port).toBeGreaterThan(0);
    expect((await t.call('POST', `/v1/sockets/${l}/listen`, { backlog: 4 })).body.state).toBe('listening');

    const c = await create('inet6', 'stream');
    const conn = await t.call('POST', `/v1/sockets/${c}/connect`, { address: '::1', port, timeoutMs: 2000 });
    expect(conn.status).toBe(200);
    expect(conn.body.state).toBe('connected');
    expect(conn.body.remote).toEqual({ address: '::1', port });
    expect(conn.body.local.address).toBe('::1');
    const clientLocal: Addr = conn.body.local;

    const a = await t.call('POST', `/v1/sockets/${l}/accept`, { timeoutMs: 2000 });
    expect(a.status).toBe(201);
    expect(a.body).toMatchObject({ family: 'AF_INET6', state: 'connected', listener: l });
    expect(a.body.local).toEqual({ address: '::1', port });
    expect(a.body.remote).toEqual(clientLocal);

    expect((await t.call('POST', `/v1/sockets/${c}/send`, { data: 'over six' })).body).toEqual({ bytes: 8 });
    const r = await t.call('POST', `/v1/sockets/${a.body.id}/recv`, { maxBytes: 100, waitAll: false, timeoutMs: 2000 });
    expect(r.body).toEqual({ data: 'over six', encoding: 'utf8', bytes: 8, eof: false });
    expect((await t.call('POST', `/v1/sockets/${a.body.id}/send`, { data: 'ff00', encoding: 'hex' })).body).toEqual({ bytes: 2 });
    const back = await t.call('POST', `/v1/sockets/${c}/recv`, { encoding: 'hex', timeoutMs: 2000 });
    expect(back.body).toEqual({ data: 'ff00', encoding: 'hex', bytes: 2, eof: false });
  });
});

describe('UDP on ::1', () => {
  // recvfrom on AF_INET6 reports the sender as "::1" and its port.
  it('sends and receives datagrams with from = the sender local', async () => {
    const a = await create('AF_INET6', 'SOCK_DGRAM');
    const b = await create('AF_INET6', 'SOCK_DGRAM');
    const aLocal: Addr = (await bind(a, '::1')).body.local;
    const bLocal: Addr = (await bind(b, '::1')).body.local;
    expect(aLocal.address).toBe('::1');
    expect((await t.call('POST', `/v1/sockets/${a}/send`, { data: 'v6', to: bLocal })).body).toEqual({ bytes: 2 });
    const r = await t.call('POST', `/v1/sockets/${b}/recv`, { timeoutMs: 1000 });
    expect(r.body).toEqual({ data: 'v6', encoding: 'utf8', bytes: 2, eof: false, from: aLocal, truncated: false });
    const raw = await t.call('POST', `/v1/sockets/${a}/recv`, { timeoutMs: 0 }, { accept: 'application/octet-stream' });
    expect(raw.status).toBe(504);
    await t.call('POST', `/v1/sockets/${b}/send`, { data: 'back', to: aLocal });
    const rr = await t.call('POST', `/v1/sockets/${a}/recv`, { timeoutMs: 1000 }, { accept: 'application/octet-stream' });
    expect(rr.headers['sockctl-from']).toBe(`[::1]:${bLocal.port}`);
    expect(rr.raw.toString()).toBe('back');
  });
});

describe('IPV6_V6ONLY and the shared port space', () => {
  // binding :: and 0.0.0.0 is a wildcard bind, which the default policy refuses
  beforeEach(async () => {
    await t.close();
    t = await startApp({}, { policy: WILDCARD_BIND_POLICY });
  });

  // Binding "::" and "0.0.0.0" is binding only: no traffic leaves loopback.
  // With V6ONLY off, [::]:P also takes 0.0.0.0:P (v4-mapped), so an IPv4 bind of P clashes at bind().
  it('V6ONLY false (set with PATCH before bind) makes an IPv4 bind of the same port fail with EADDRINUSE', async () => {
    const six = await create('AF_INET6', 'SOCK_STREAM');
    const o = await t.call('PATCH', `/v1/sockets/${six}/options`, { IPV6_V6ONLY: false });
    expect(o.status).toBe(200);
    expect(o.body.IPV6_V6ONLY).toBe(false);
    const port: number = (await bind(six, '::')).body.local.port;
    const four = await create('AF_INET', 'SOCK_STREAM');
    const r = await bind(four, '0.0.0.0', port);
    expect(r.status).toBe(409);
    expect(r.body).toMatchObject({ statusCode: 409, error: 'Conflict', code: 'EADDRINUSE', errno: 98, syscall: 'bind', socket: four });
    expect(r.body.message).toBe(`bind 0.0.0.0:${port}: address already in use`);
    expect((await t.call('GET', `/v1/sockets/${four}`)).body).toMatchObject({ state: 'created', local: null });
  });

  // The same, with the option given at create.
  it('V6ONLY false given at create clashes too', async () => {
    const six = await create('AF_INET6', 'SOCK_DGRAM', { options: { IPV6_V6ONLY: false } });
    expect((await t.call('GET', `/v1/sockets/${six}/options`)).body.IPV6_V6ONLY).toBe(false);
    const port: number = (await bind(six, '::')).body.local.port;
    const four = await create('AF_INET', 'SOCK_DGRAM');
    const r = await bind(four, '0.0.0.0', port);
    expect(r.status).toBe(409);
    expect(r.body.code).toBe('EADDRINUSE');
  });

  // With V6ONLY on, [::]:P is IPv6 only and 0.0.0.0:P is free.
  it('V6ONLY true lets the IPv4 bind of the same port succeed', async () => {
    const six = await create('AF_INET6', 'SOCK_STREAM', { options: { IPV6_V6ONLY: true } });
    expect((await t.call('GET', `/v1/sockets/${six}/options`)).body.IPV6_V6ONLY).toBe(true);
    const port: number = (await bind(six, '::')).body.local.port;
    const four = await create('AF_INET', 'SOCK_STREAM');
    const r = await bind(four, '0.0.0.0', port);
    expect(r.status).toBe(200);
    expect(r.body.local).toEqual({ address: '0.0.0.0', port });
    // and the PATCH route sets it the same way
    const other = await create('AF_INET6', 'SOCK_DGRAM');
    expect((await t.call('PATCH', `/v1/sockets/${other}/options`, { IPV6_V6ONLY: true })).body.IPV6_V6ONLY).toBe(true);
    const p2: number = (await bind(other, '::')).body.local.port;
    const four2 = await create('AF_INET', 'SOCK_DGRAM');
    expect((await bind(four2, '0.0.0.0', p2)).status).toBe(200);
  });

  // IPV6_V6ONLY is an AF_INET6 option: not listed for an AF_INET socket.
  it('is listed for AF_INET6 only', async () => {
    const four = await create('AF_INET', 'SOCK_STREAM');
    const opts = (await t.call('GET', `/v1/sockets/${four}/options`)).body;
    expect(opts).not.toHaveProperty('IPV6_V6ONLY');
    expect(opts.IP_TTL).toBe(64);
  });
});

describe('family mismatches', () => {
  // An address of the other family goes to the kernel as given, and its errno comes back: an IPv6
  // sockaddr on an AF_INET socket is EAFNOSUPPORT, a 16-byte sockaddr_in on AF_INET6 is EINVAL.
  it('passes the kernel errno through, and a v4-mapped address binds on AF_INET6', async () => {
    const four = await create('AF_INET', 'SOCK_DGRAM');
    const r4 = await bind(four, '::1');
    expect(r4.status).toBe(400);
    expect(r4.body).toMatchObject({ code: 'EAFNOSUPPORT', errno: 97, syscall: 'bind' });
    const six = await create('AF_INET6', 'SOCK_STREAM');
    const r6 = await bind(six, '127.0.0.1');
    expect(r6.status).toBe(400);
    expect(r6.body).toMatchObject({ code: 'EINVAL', errno: 22, syscall: 'bind' });
    const mapped = await bind(six, '::ffff:127.0.0.1');
    expect(mapped.status).toBe(200);
    expect(mapped.body.local.address).toBe('::ffff:127.0.0.1');
  });
});

describe('?view=sockaddr', () => {
  // struct sockaddr_in6 (28 bytes): family in host order (10 = 0a00 on little-endian), htons(port),
  // flowinfo, the 16 address bytes of ::1, scope id.
  it('shows the sockaddr_in6 bytes of [::1]:port', async () => {
    const s = await create('AF_INET6', 'SOCK_DGRAM');
    const port: number = (await bind(s, '::1')).body.local.port;
    const r = await t.call('GET', `/v1/sockets/${s}?view=sockaddr`);
    expect(r.status).toBe(200);
    expect(r.body.sockaddr.remote).toBeNull();
    const v = r.body.sockaddr.local;
    expect(v.struct).toBe('sockaddr_in6');
    expect(v.length).toBe(28);
    expect(v.hex).toBe('0a00' + portHex(port) + '00000000' + '0'.repeat(30) + '01' + '00000000');
    expect(v.hex.slice(4, 8)).toBe(Buffer.from([port >> 8, port & 0xff]).toString('hex'));
  });

  // struct sockaddr_in (16 bytes): 0200, htons(port), 7f000001, 8 bytes of sin_zero.
  it('shows the sockaddr_in bytes of 127.0.0.1:port, local and remote', async () => {
    const a = await create('AF_INET', 'SOCK_DGRAM');
    const b = await create('AF_INET', 'SOCK_DGRAM');
    const aPort: number = (await bind(a, '127.0.0.1')).body.local.port;
    const bPort: number = (await bind(b, '127.0.0.1')).body.local.port;
    await t.call('POST', `/v1/sockets/${a}/connect`, { address: '127.0.0.1', port: bPort });
    const r = await t.call('GET', `/v1/sockets/${a}?view=sockaddr`);
    const { local, remote } = r.body.sockaddr;
    expect(local).toMatchObject({ struct: 'sockaddr_in', length: 16 });
    expect(local.hex).toBe(`0200${portHex(aPort)}7f000001${'0'.repeat(16)}`);
    expect(remote.hex).toBe(`0200${portHex(bPort)}7f000001${'0'.repeat(16)}`);
    expect(local.fields.sin_port).toBe(`htons(${aPort}) = ${portHex(aPort).slice(0, 2)} ${portHex(aPort).slice(2)}`);
    // without the view, no sockaddr field
    expect((await t.call('GET', `/v1/sockets/${a}`)).body).not.toHaveProperty('sockaddr');
  });
});

// Socket options over the HTTP API: defaults, setsockopt then getsockopt as the kernel reports them,
// read-only and unknown options, wrong types, the kernel's own refusal, options at create, SO_RCVTIMEO.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fdCount, startApp, type TestApp } from './helpers.js';

let t: TestApp;
beforeEach(async () => {
  t = await startApp();
});
afterEach(async () => {
  await t.close();
});

async function create(type: string, extra: object = {}): Promise<string> {
  const r = await t.call('POST', '/v1/sockets', { family: 'AF_INET', type, ...extra });
  expect(r.status).toBe(201);
  return r.body.id;
}
const getOpts = (id: string) => t.call('GET', `/v1/sockets/${id}/options`);
const patch = (id: string, body: unknown) => t.call('PATCH', `/v1/sockets/${id}/options`, body);

/**
 * What the kernel itself answers for SO_RCVTIMEO after setting `ms`, in ms, measured by a separate
 * python3 process: Linux keeps the timeout in jiffies, so 250 reads back as 252 at HZ=250.
 */
function kernelRcvtimeo(ms: number): number {
  const py = [
    'import socket, struct',
    's = socket.socket()',
    `s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack('ll', ${Math.floor(ms / 1000)}, ${(ms % 1000) * 1000}))`,
    "sec, usec = struct.unpack('ll', s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16))",
    'print(sec * 1000000 + usec)',
  ].join('\n');
  return Number(execFileSync('python3', ['-c', py], { encoding: 'utf8' }).trim()) / 1000;
}

describe('defaults and SO_TYPE', () => {
  // A fresh socket is what socket(2) gives: SO_REUSEADDR off (unlike libuv), no linger, no timeouts.
  it('a fresh TCP socket reports the kernel defaults', async () => {
    const id = await create('SOCK_STREAM');
    const r = await getOpts(id);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({
      SO_REUSEADDR: false,
      SO_REUSEPORT: false,
      SO_KEEPALIVE: false,
      SO_LINGER: { onoff: false, linger: 0 },
      SO_RCVTIMEO: 0,
      SO_SNDTIMEO: 0,
      SO_TYPE: 'SOCK_STREAM',
      SO_ERROR: 0,
      SO_ACCEPTCONN: false,
      TCP_NODELAY: false,
      IP_TTL: Number(readFileSync('/proc/sys/net/ipv4/ip_default_ttl', 'utf8').trim()),
    });
  });

  // SO_TYPE names the type; TCP_* options are not listed for a datagram socket.
  it('SO_TYPE reads SOCK_DGRAM on UDP, and UDP lists no TCP_* option', async () => {
    const id = await create('dgram');
    const r = await getOpts(id);
    expect(r.body.SO_TYPE).toBe('SOCK_DGRAM');
    expect(r.body.SO_REUSEADDR).toBe(false);
    expect(Object.keys(r.body).filter((k) => k.startsWith('TCP_'))).toEqual([]);
  });
});

describe('PATCH /options', () => {
  // Each option goes through setsockopt(2) and comes back as getsockopt(2) reads it.
  it('sets options and reads back the kernel values', async () => {
    const id = await create('SOCK_STREAM');
    const r = await patch(id, {
      TCP_NODELAY: true,
      SO_KEEPALIVE: true,
      SO_REUSEADDR: true,
      SO_LINGER: { onoff: true, linger: 5 },
      SO_RCVBUF: 50_000,
      IP_TTL: 32,
      SO_RCVTIMEO: 250,
    });
    expect(r.status).toBe(200);
    const expected = {
      TCP_NODELAY: true,
      SO_KEEPALIVE: true,
      SO_REUSEADDR: true,
      SO_LINGER: { onoff: true, linger: 5 },
      // the kernel doubles SO_RCVBUF (bookkeeping overhead, socket(7)); 50000 is under rmem_max
      SO_RCVBUF: 100_000,
      IP_TTL: 32,
      SO_RCVTIMEO: kernelRcvtimeo(250),
    };
    expect(r.body).toMatchObject(expected);
    // and a later GET reads the same
    const g = await getOpts(id);
    expect(g.body).toMatchObject(expected);
    // options not named keep their values
    expect(g.body.SO_REUSEPORT).toBe(false);
    expect(g.body.SO_SNDTIMEO).toBe(0);
  });

  // Options can be turned off again. Linux ignores l_linger when l_onoff is 0 and keeps the old time,
  // so {onoff: false, linger: 0} after {true, 7} reads back {false, 7} (python3 shows the same: (0, 7)).
  it('clears flags again, with the kernel keeping the old linger time', async () => {
    const id = await create('SOCK_STREAM');
    await patch(id, { TCP_NODELAY: true, SO_LINGER: { onoff: true, linger: 7 } });
    const r = await patch(id, { TCP_NODELAY: false, SO_LINGER: { onoff: false, linger: 0 } });
    expect(r.body.TCP_NODELAY).toBe(false);
    expect(r.body.SO_LINGER).toEqual({ onoff: false, linger: 7 });
  });

  // SO_TYPE and SO_ERROR cannot be set: 400 before any setsockopt, so nothing else in the body applies.
  it.each([
    ['SO_TYPE', 'SOCK_DGRAM'],
    ['SO_ERROR', 0],
  ])('refuses read-only %s with 400 and applies nothing', async (name, value) => {
    const id = await create('SOCK_STREAM');
    const r = await patch(id, { SO_REUSEADDR: true, [name]: value });
    expect(r.status).toBe(400);
    expect(r.body).toEqual({
      statusCode: 400,
      error: 'Bad Request',
      code: 'SOCKCTL_BAD_REQUEST',
      message: `read-only option(s): ${name}`,
    });
    expect((await getOpts(id)).body.SO_REUSEADDR).toBe(false);
  });

  // Unknown names and wrong value types are schema errors.
  it.each([
    ['an unknown option', { SO_BOGUS: true }],
    ['a string for a flag', { SO_REUSEADDR: 'yes' }],
    ['a number for a flag', { TCP_NODELAY: 1 }],
    ['a string for a size', { SO_RCVBUF: '1024' }],
    ['a linger without onoff', { SO_LINGER: { linger: 5 } }],
    ['a negative timeout', { SO_RCVTIMEO: -1 }],
  ])('refuses %s with 400 FST_ERR_VALIDATION', async (_what, body) => {
    const id = await create('SOCK_STREAM');
    const r = await patch(id, body);
    expect(r.status).toBe(400);
    expect(r.body).toMatchObject({ statusCode: 400, error: 'Bad Request', code: 'FST_ERR_VALIDATION' });
    expect(typeof r.body.message).toBe('string');
  });

  // setsockopt(IPPROTO_TCP, TCP_NODELAY) on a UDP socket: Linux answers ENOPROTOOPT, passed through.
  it('passes the kernel refusal through: TCP_NODELAY on UDP is 400 ENOPROTOOPT', async () => {
    const id = await create('SOCK_DGRAM');
    const r = await patch(id, { TCP_NODELAY: true });
    expect(r.status).toBe(400);
    expect(r.body).toEqual({
      statusCode: 400,
      error: 'Bad Request',
      code: 'ENOPROTOOPT',
      errno: 92,
      syscall: 'setsockopt',
      message: 'setsockopt TCP_NODELAY: protocol not available',
      socket: id,
    });
  });

  // A closed socket refuses options with EBADF, without touching a reused descriptor number.
  it('answers 409 EBADF on a closed socket', async () => {
    const id = await create('SOCK_STREAM');
    await t.call('DELETE', `/v1/sockets/${id}`);
    expect((await patch(id, { SO_REUSEADDR: true })).body).toMatchObject({ statusCode: 409, code: 'EBADF' });
    expect((await getOpts(id)).body).toMatchObject({ statusCode: 409, code: 'EBADF' });
  });
});

describe('options at create', () => {
  // `options` in POST /v1/sockets are applied right after socket(2).
  it('applies them', async () => {
    const id = await create('SOCK_STREAM', { options: { SO_REUSEADDR: true, TCP_NODELAY: true } });
    const r = await getOpts(id);
    expect(r.body.SO_REUSEADDR).toBe(true);
    expect(r.body.TCP_NODELAY).toBe(true);
  });

  // An option the kernel refuses fails the create and leaves neither a socket nor a descriptor behind.
  it('a refused option fails the create and leaks nothing', async () => {
    const before = fdCount();
    const r = await t.call('POST', '/v1/sockets', { family: 'inet', type: 'dgram', options: { TCP_NODELAY: true } });
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('ENOPROTOOPT');
    expect(fdCount()).toBe(before);
    expect((await t.call('GET', '/v1/sockets')).body.items).toEqual([]);
  });
});

describe('SO_RCVTIMEO', () => {
  // A recv without timeoutMs waits as long as SO_RCVTIMEO (not the service cap of 5000 ms), then EAGAIN.
  it('bounds a recv without timeoutMs', async () => {
    const id = await create('SOCK_DGRAM', { options: { SO_RCVTIMEO: 200 } });
    await t.call('POST', `/v1/sockets/${id}/bind`, { address: '127.0.0.1', port: 0 });
    const start = Date.now();
    const r = await t.call('POST', `/v1/sockets/${id}/recv`, {});
    const elapsed = Date.now() - start;
    expect(r.status).toBe(504);
    expect(r.body).toMatchObject({ code: 'EAGAIN', errno: 11 });
    expect(elapsed).toBeGreaterThanOrEqual(150);
    expect(elapsed).toBeLessThan(3000);
    // an explicit timeoutMs still wins: 0 is non-blocking
    const s = Date.now();
    expect((await t.call('POST', `/v1/sockets/${id}/recv`, { timeoutMs: 0 })).body.code).toBe('EAGAIN');
    expect(Date.now() - s).toBeLessThan(150);
  });
});

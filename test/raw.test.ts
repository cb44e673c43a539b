// SOCK_RAW over the HTTP API: off by default (403); when enabled and privileged, an ICMP echo request
// built by hand reaches 127.0.0.1 / ::1 and its reply comes back (with the IPv4 header on AF_INET raw
// sockets, without a header on AF_INET6); without CAP_NET_RAW the kernel's EPERM comes through.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startApp, until, type TestApp } from './helpers.js';
import { closedPort } from './ports.js';

let t: TestApp | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

const root = process.getuid?.() === 0;
const setpriv = spawnSync('setpriv', ['--version'], { stdio: 'ignore' }).status === 0;

const post = (id: string, op: string, body: object = {}) => t!.call('POST', `/v1/sockets/${id}/${op}`, body);

/** The Internet checksum (RFC 1071): one's complement of the one's complement sum of 16-bit words. */
function checksum(buf: Buffer): number {
  let sum = 0;
  for (let i = 0; i + 1 < buf.length; i += 2) sum += buf.readUInt16BE(i);
  if (buf.length % 2) sum += buf[buf.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** An ICMP echo request: type, code 0, checksum, identifier, sequence, payload (all network byte order). */
function echoRequest(type: number, id: number, seq: number, payload: Buffer, withChecksum: boolean): Buffer {
  const msg = Buffer.concat([Buffer.alloc(8), payload]);
  msg.writeUInt8(type, 0);
  msg.writeUInt8(0, 1);
  msg.writeUInt16BE(id, 4);
  msg.writeUInt16BE(seq, 6);
  if (withChecksum) msg.writeUInt16BE(checksum(msg), 2);
  return msg;
}

/** Receives until a message matches (other ICMP traffic of the host reaches a raw socket too). */
async function recvMatching(id: string, match: (b: Buffer) => boolean): Promise<{ data: Buffer; from: unknown; all: Buffer[] }> {
  const all: Buffer[] = [];
  for (let i = 0; i < 50; i++) {
    const r = await post(id, 'recv', { timeoutMs: 2000, encoding: 'hex' });
    expect(r.status).toBe(200);
    const data = Buffer.from(r.body.data, 'hex');
    expect(r.body).toMatchObject({ bytes: data.length, eof: false, truncated: false });
    all.push(data);
    if (match(data)) return { data, from: r.body.from, all };
  }
  throw new Error('no matching ICMP message');
}

describe('raw sockets disabled (the default)', () => {
  it('refuses SOCK_RAW with 403 SOCKCTL_FORBIDDEN before any syscall', async () => {
    t = await startApp();
    for (const body of [
      { family: 'AF_INET', type: 'SOCK_RAW', protocol: 'IPPROTO_ICMP' },
      { family: 'inet6', type: 'raw', protocol: 'icmpv6' },
    ]) {
      const r = await t.call('POST', '/v1/sockets', body);
      expect(r.status).toBe(403);
      expect(r.body).toMatchObject({ statusCode: 403, error: 'Forbidden', code: 'SOCKCTL_FORBIDDEN' });
      expect(r.body.message).toMatch(/raw sockets are disabled/);
      expect(r.body.errno).toBeUndefined();
    }
    expect(t.app.registry.size.total).toBe(0);
  });
});

describe.skipIf(!root)('raw ICMP, enabled and privileged', () => {
  it('sends a hand-built ICMP echo request to 127.0.0.1 and receives the reply with its IPv4 header', async () => {
    t = await startApp({ allowRaw: true });
    const c = await t.call('POST', '/v1/sockets', { family: 'inet', type: 'raw', protocol: 'icmp' });
    expect(c.status).toBe(201);
    // a raw socket is never bound by socket(): local stays null though getsockname shows 0.0.0.0:1
    expect(c.body).toMatchObject({ family: 'AF_INET', type: 'SOCK_RAW', protocol: 'IPPROTO_ICMP', state: 'created', local: null });
    const id = c.body.id as string;

    const ident = randomBytes(2).readUInt16BE(0);
    const payload = Buffer.from(`sockctl ping ${process.pid}`);
    for (const [seq, encoding] of [
      [1, 'base64'],
      [2, 'hex'],
    ] as const) {
      const req = echoRequest(8, ident, seq, payload, true);
      expect(checksum(req)).toBe(0);
      const s = await post(id, 'send', { data: req.toString(encoding), encoding, to: { address: '127.0.0.1', port: 0 } });
      expect(s.status).toBe(200);
      expect(s.body).toEqual({ bytes: req.length });

      const isReply = (b: Buffer) => b.length >= 28 && b[20] === 0 && b.readUInt16BE(24) === ident && b.readUInt16BE(26) === seq;
      const { data, from } = await recvMatching(id, isReply);
      // IPv4 header: version 4, IHL 5 (20 bytes), protocol 1 (ICMP), 127.0.0.1 → 127.0.0.1
      expect(data[0]).toBe(0x45);
      expect(data[9]).toBe(1);
      expect([...data.subarray(12, 16)]).toEqual([127, 0, 0, 1]);
      expect([...data.subarray(16, 20)]).toEqual([127, 0, 0, 1]);
      expect(data.readUInt16BE(2)).toBe(data.length);
      const icmp = data.subarray(20);
      expect(icmp[0]).toBe(0); // echo reply
      expect(icmp[1]).toBe(0);
      expect(checksum(icmp)).toBe(0);
      expect(icmp.subarray(8)).toEqual(payload);
      expect(from).toEqual({ address: '127.0.0.1', port: 0 });
    }
    const after = (await t.call('GET', `/v1/sockets/${id}`)).body;
    // sendto on a raw socket binds nothing
    expect(after).toMatchObject({ state: 'created', local: null, stats: { messagesSent: 2 } });
    expect(after.stats.messagesReceived).toBeGreaterThanOrEqual(2);
    expect(after.kernel.drops).toBe(0);
  });

  it('binds a raw socket to 127.0.0.1: local shows the protocol number in the port field, as the kernel does', async () => {
    t = await startApp({ allowRaw: true });
    const id = (await t.call('POST', '/v1/sockets', { family: 'AF_INET', type: 'SOCK_RAW', protocol: 'IPPROTO_ICMP' })).body.id;
    const b = await post(id, 'bind', { address: '127.0.0.1', port: 0 });
    expect(b.status).toBe(200);
    expect(b.body).toMatchObject({ state: 'bound', local: { address: '127.0.0.1', port: 1 } });
    const view = (await t.call('GET', `/v1/sockets/${id}?view=sockaddr`)).body.sockaddr.local;
    expect(view.hex).toBe('02000001' + '7f000001' + '0000000000000000');
  });

  it('sends an ICMPv6 echo request to ::1 (the kernel fills the checksum) and receives the reply without IP header', async () => {
    t = await startApp({ allowRaw: true });
    const c = await t.call('POST', '/v1/sockets', { family: 'AF_INET6', type: 'SOCK_RAW', protocol: 'IPPROTO_ICMPV6' });
    expect(c.status).toBe(201);
    expect(c.body).toMatchObject({ family: 'AF_INET6', type: 'SOCK_RAW', protocol: 'IPPROTO_ICMPV6', local: null });
    const id = c.body.id as string;
    const ident = randomBytes(2).readUInt16BE(0);
    const payload = randomBytes(32);
    const req = echoRequest(128, ident, 7, payload, false);
    const s = await post(id, 'send', { data: req.toString('base64'), encoding: 'base64', to: { address: '::1', port: 0 } });
    expect(s.body).toEqual({ bytes: req.length });

    const ours = (b: Buffer) => b.length >= 8 && b.readUInt16BE(4) === ident && b.readUInt16BE(6) === 7;
    const { data, from, all } = await recvMatching(id, (b) => b[0] === 129 && ours(b));
    expect(data[1]).toBe(0);
    expect(data.subarray(8)).toEqual(payload);
    expect(data.readUInt16BE(2)).not.toBe(0); // the kernel computed it (IPV6_CHECKSUM is forced for ICMPv6)
    expect(from).toEqual({ address: '::1', port: 0 });
    // loopback delivers our own request to raw sockets too, with the checksum the kernel filled in
    const echoed = all.find((b) => b[0] === 128 && ours(b));
    if (echoed) {
      expect(echoed.subarray(8)).toEqual(payload);
      expect(echoed.readUInt16BE(2)).not.toBe(0);
    }
  });

  it('refuses raw sockets without a protocol, with another protocol, or on AF_UNIX (400)', async () => {
    t = await startApp({ allowRaw: true });
    for (const body of [
      { family: 'inet', type: 'raw' },
      { family: 'inet', type: 'raw', protocol: 'tcp' },
      { family: 'inet', type: 'raw', protocol: 'udp' },
      { family: 'inet', type: 'raw', protocol: 'icmpv6' },
      { family: 'inet6', type: 'raw', protocol: 'icmp' },
      { family: 'unix', type: 'raw' },
    ]) {
      const r = await t.call('POST', '/v1/sockets', body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.code).toBe('SOCKCTL_BAD_REQUEST');
    }
    expect(t.app.registry.size.total).toBe(0);
  });
});


describe.skipIf(!root || !setpriv)('raw ICMP, enabled but without CAP_NET_RAW', () => {
  it('passes the kernel EPERM through as 409', async () => {
    const port = closedPort();
    const unixDir = mkdtempSync(join(tmpdir(), 'sc-raw-'));
    const env = { ...process.env, SOCKCTL_PORT: String(port), SOCKCTL_TOKEN: 'raw-token', SOCKCTL_UNIX_DIR: unixDir, SOCKCTL_ALLOW_RAW: 'true', SOCKCTL_LOG_LEVEL: 'warn' };
    // root without CAP_NET_RAW in its bounding set: exec gives the service no such capability
    const child = spawn('setpriv', ['--bounding-set', '-net_raw', '--inh-caps', '-net_raw', process.execPath, '--import', 'tsx', 'src/main.ts'], {
      cwd: join(import.meta.dirname, '..'),
      env,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const base = `http://127.0.0.1:${port}`;
      await until(async () => (await fetch(`${base}/v1/health`).catch(() => null))?.ok, `the service to start (${stderr})`, 15_000);
      const r = await fetch(`${base}/v1/sockets`, {
        method: 'POST',
        headers: { authorization: 'Bearer raw-token', 'content-type': 'application/json' },
        body: JSON.stringify({ family: 'inet', type: 'raw', protocol: 'icmp' }),
      });
      expect(r.status).toBe(409);
      expect(await r.json()).toMatchObject({ statusCode: 409, code: 'EPERM', errno: 1, syscall: 'socket' });
    } finally {
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      rmSync(unixDir, { recursive: true, force: true });
    }
  });
});

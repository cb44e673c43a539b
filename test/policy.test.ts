// The address policy (issue 5): by default bind, connect and sendto reach loopback only, ports 0 and
// >= 1024, Unix paths inside the user's own directory, no abstract names, no raw sockets. Every denial is a
// 403 that names the rule and happens before any syscall. A guard around the addon records every bind,
// connect, listen and sendto this process makes, and refuses (without calling the kernel) any that would
// leave loopback, so that even a policy bug cannot send traffic off this host from these tests.
import { mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { SockctlError } from '../src/errors.js';
import { native, type SockAddr } from '../src/io/native.js';
import { AddressPolicy, defaultRules, type PolicyOp } from '../src/policy/address-policy.js';
import type { User } from '../src/policy/users.js';
import { inetSockAddr } from '../src/sockets/addresses.js';
import { startApp, TOKEN, type Reply, type TestApp } from './helpers.js';

const ALICE = 'alice-token-0123456789abcdef';
const BOB = 'bob-token-0123456789abcdefgh';
const TOKENS = {
  users: [
    { name: 'alice', token: ALICE, role: 'user' },
    { name: 'bob', token: BOB, role: 'user' },
  ],
};

// ---- the syscall guard ---------------------------------------------------------------------------------

interface Syscall {
  syscall: 'bind' | 'connect' | 'sendto' | 'listen';
  fd: number;
  sa?: SockAddr | null;
}

// The addon's exports are read-only, so the guard replaces the module that hands them to the service:
// every src/ import of io/native.js gets a copy whose bind, connect, send (with an address) and listen
// record the call and refuse a destination off this host before the kernel sees it.
const guard = vi.hoisted(() => ({ syscalls: [] as Syscall[] }));
const syscalls = guard.syscalls;

vi.mock('../src/io/native.js', async (importOriginal) => {
  const original = await importOriginal<typeof import('../src/io/native.js')>();
  const n = original.native;
  const { BlockList } = await import('node:net');
  // loopback as libuv's inet_pton reads it (not ipaddr.js, which takes "::127.0.0.1" for a mapped address)
  const loopback = new BlockList();
  loopback.addSubnet('127.0.0.0', 8, 'ipv4');
  loopback.addAddress('::1', 'ipv6');
  loopback.addSubnet('::ffff:127.0.0.0', 104, 'ipv6');
  const unspecified = new BlockList();
  unspecified.addAddress('0.0.0.0', 'ipv4');
  unspecified.addAddress('::', 'ipv6');
  /** Loopback (or the unspecified address, for a bind), judged independently of the service's policy code. */
  const local = (sa: SockAddr, op: string) => {
    if ('path' in sa) return true;
    const family = sa.address.includes(':') ? 'ipv6' : 'ipv4';
    return loopback.check(sa.address, family) || (op === 'bind' && unspecified.check(sa.address, family));
  };
  const refuse = (syscall: string): never => {
    throw Object.assign(new Error(`${syscall}: test guard refused a non-loopback address`), { code: 'EACCES', errno: 13, syscall });
  };
  const native = {
    ...n,
    bind(fd: number, sa: SockAddr) {
      guard.syscalls.push({ syscall: 'bind', fd, sa });
      if (!local(sa, 'bind')) refuse('bind');
      return n.bind(fd, sa);
    },
    connect(fd: number, sa: SockAddr) {
      guard.syscalls.push({ syscall: 'connect', fd, sa });
      if (!local(sa, 'connect')) refuse('connect');
      return n.connect(fd, sa);
    },
    send(fd: number, data: Uint8Array, flags: number, to?: SockAddr | null) {
      if (to) {
        guard.syscalls.push({ syscall: 'sendto', fd, sa: to });
        if (!local(to, 'sendto')) refuse('sendto');
      }
      return n.send(fd, data, flags, to);
    },
    listen(fd: number, backlog: number) {
      guard.syscalls.push({ syscall: 'listen', fd });
      return n.listen(fd, backlog);
    },
  } as typeof n;
  return { ...original, native };
});

/** The guarded syscalls made on a socket since it was created (fd numbers are reused after a close). */
const syscallsOn = (s: { fd: number; mark: number }) => syscalls.slice(s.mark).filter((c) => c.fd === s.fd);

// ---- the app -------------------------------------------------------------------------------------------

let t: TestApp | undefined;
const servers: net.Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
  await t?.close();
  t = undefined;
});

async function call(token: string, method: string, url: string, body?: unknown): Promise<Reply<any>> {
  const r = await t!.app.inject({
    method: method as any,
    url,
    headers: { authorization: `Bearer ${token}` },
    ...(body === undefined ? {} : { payload: body as object }),
  });
  const type = String(r.headers['content-type'] ?? '');
  return { status: r.statusCode, body: type.includes('json') && r.body ? JSON.parse(r.body) : r.body, raw: r.rawPayload, headers: r.headers };
}

async function create(token: string, family: string, type = 'stream'): Promise<{ id: string; fd: number; mark: number }> {
  const mark = syscalls.length;
  const r = await call(token, 'POST', '/v1/sockets', { family, type });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  return { ...r.body, mark };
}

/** A plain TCP server (node:net) for the allowed connects. */
async function server(host: string, port = 0): Promise<number> {
  const s = net.createServer((c) => c.destroy());
  servers.push(s);
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.listen({ host, port, ipv6Only: host.includes(':') }, resolve);
  });
  return (s.address() as net.AddressInfo).port;
}

const familyOf = (address: string) => (net.isIPv6(address.split('%')[0]!) ? 'inet6' : 'inet');

/** One operation through HTTP on a fresh socket: the reply, the socket after it, and the syscalls it made. */
async function attempt(token: string, op: PolicyOp, address: string, port: number) {
  const family = familyOf(address);
  const s = await create(token, family, op === 'sendto' ? 'dgram' : 'stream');
  const r =
    op === 'bind'
      ? await call(token, 'POST', `/v1/sockets/${s.id}/bind`, { address, port })
      : op === 'connect'
        ? await call(token, 'POST', `/v1/sockets/${s.id}/connect`, { address, port, timeoutMs: 2000 })
        : await call(token, 'POST', `/v1/sockets/${s.id}/send`, { data: 'x', to: { address, port } });
  const after = (await call(token, 'GET', `/v1/sockets/${s.id}`)).body;
  const made = syscallsOn(s).filter((c) => c.syscall === op);
  await call(token, 'DELETE', `/v1/sockets/${s.id}`);
  return { r, after, made };
}

/** A denial: 403 SOCKCTL_FORBIDDEN naming the rule, no syscall, the socket as it was. */
function expectDenied(res: Awaited<ReturnType<typeof attempt>>, op: PolicyOp, rule: RegExp, what: string): void {
  expect(res.r.status, `${what}: ${JSON.stringify(res.r.body)}`).toBe(403);
  expect(res.r.body, what).toMatchObject({ statusCode: 403, error: 'Forbidden', code: 'SOCKCTL_FORBIDDEN' });
  expect(res.r.body.message, what).toMatch(new RegExp(`^${op} denied by policy rule `));
  expect(res.r.body.message, what).toMatch(rule);
  expect(res.r.body.errno, what).toBeUndefined();
  expect(res.made, `${what}: no ${op} syscall`).toEqual([]);
  expect(res.after.state, what).toBe('created');
  expect(res.after.local, what).toBeNull(); // not even an implicit bind
  expect(res.after.lastError, what).toBeNull();
  if (op !== 'sendto') expect(res.after.kernel.tcpState, what).toBe('CLOSE');
  expect(res.after.stats.messagesSent, what).toBe(0);
}

const admin: User = { name: 'admin', role: 'admin', limits: { sockets: 1, listeners: 1, connectsPerSecond: 1, bufferBytes: 1, observers: 1 } };
const alice: User = { ...admin, name: 'alice', role: 'user' };
const builtin = () => new AddressPolicy(defaultRules({ allowRaw: false, allowAbstract: false, unixPrefixes: ['/srv/sockctl'] }), '');

/** The denied destinations of the default policy: private, public, wildcard, NAT64/6to4/compatible, link-local, metadata, multicast, broadcast. */
const DENIED = [
  '10.0.0.1',
  '192.168.1.1',
  '8.8.8.8',
  '::ffff:10.0.0.1',
  '::ffff:8.8.8.8',
  '64:ff9b::808:808',
  '2002:0808:0808::1',
  '::8.8.8.8',
  'fe80::1%1',
  '169.254.169.254',
  '::ffff:169.254.169.254',
  '224.0.0.1',
  '255.255.255.255',
  '172.16.0.1',
  '100.64.0.1',
  'fc00::1',
  '2001:4860:4860::8888',
  'ff02::1',
  '::127.0.0.1',
  '0.0.0.0',
  '::',
];

describe('the default policy (no policy file)', () => {
  it('allows loopback: 127.0.0.1, ::1 and ::ffff:127.0.0.1 for bind, connect and sendto (and the guard sees those syscalls)', async () => {
    t = await startApp();
    const v4 = await server('127.0.0.1');
    const v6 = await server('::1');
    for (const [address, port] of [
      ['127.0.0.1', v4],
      ['::1', v6],
      ['::ffff:127.0.0.1', v4],
    ] as const) {
      const c = await attempt(TOKEN, 'connect', address, port);
      expect(c.r.status, `connect ${address}: ${JSON.stringify(c.r.body)}`).toBe(200);
      expect(c.made.length, `connect ${address}`).toBeGreaterThan(0);
    }
    for (const address of ['127.0.0.1', '::1', '::ffff:127.0.0.1', '127.0.0.2']) {
      const b = await attempt(TOKEN, 'bind', address, 0);
      expect(b.r.status, `bind ${address}: ${JSON.stringify(b.r.body)}`).toBe(200);
      expect(b.made).toHaveLength(1);
      expect(b.after.state).toBe('bound');
      const s = await attempt(TOKEN, 'sendto', address, 5999);
      expect(s.r.status, `sendto ${address}: ${JSON.stringify(s.r.body)}`).toBe(200);
      expect(s.made).toHaveLength(1);
    }
    // ports: 0 (ephemeral) and 1024-65535
    expect((await attempt(TOKEN, 'bind', '127.0.0.1', 1024)).r.status).not.toBe(403);
    expect((await attempt(TOKEN, 'connect', '127.0.0.1', 65535)).r.status).not.toBe(403);
  });

  it('denies every non-loopback destination for bind, connect and sendto: 403 naming the rule, no syscall', async () => {
    t = await startApp();
    for (const address of DENIED)
      for (const op of ['bind', 'connect', 'sendto'] as const) {
        const res = await attempt(TOKEN, op, address, 5000);
        expectDenied(res, op, new RegExp(`builtin\\.${op}\\.allow: .* is not in 127\\.0\\.0\\.0/8, ::1/128`), `${op} ${address}`);
      }
  });

  it('names the address it judged: an IPv4-mapped address as the IPv4 address it reaches', async () => {
    t = await startApp();
    const r = await attempt(TOKEN, 'connect', '::ffff:10.0.0.1', 5000);
    expect(r.r.body.message).toContain('10.0.0.1 is not in');
    const hex = await attempt(TOKEN, 'connect', '::ffff:0a00:0001', 5000);
    expect(hex.r.body.message).toContain('10.0.0.1 is not in');
  });

  it('denies ports below 1024 on loopback: bind 127.0.0.1:80, connect ::1:22, sendto 127.0.0.1:53', async () => {
    t = await startApp();
    expectDenied(await attempt(TOKEN, 'bind', '127.0.0.1', 80), 'bind', /builtin\.bind\.ports: port 80 is not in 0, 1024-65535/, 'bind :80');
    expectDenied(await attempt(TOKEN, 'bind', '::1', 1023), 'bind', /builtin\.bind\.ports: port 1023/, 'bind :1023');
    expectDenied(await attempt(TOKEN, 'connect', '::1', 22), 'connect', /builtin\.connect\.ports: port 22 /, 'connect :22');
    expectDenied(await attempt(TOKEN, 'sendto', '127.0.0.1', 53), 'sendto', /builtin\.sendto\.ports: port 53 /, 'sendto :53');
    expectDenied(await attempt(TOKEN, 'sendto', '::ffff:127.0.0.1', 1), 'sendto', /builtin\.sendto\.ports/, 'sendto mapped :1');
  });

  it('a raw send with ?address=&port= is a sendto and is judged the same way', async () => {
    t = await startApp();
    const s = await create(TOKEN, 'inet', 'dgram');
    const r = await t.app.inject({
      method: 'POST',
      url: `/v1/sockets/${s.id}/send?address=8.8.8.8&port=53`,
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/octet-stream' },
      payload: Buffer.from('x'),
    });
    expect(r.statusCode).toBe(403);
    expect(r.json()).toMatchObject({ code: 'SOCKCTL_FORBIDDEN', message: expect.stringMatching(/^sendto denied by policy rule builtin\.sendto\.allow/) });
    expect(syscallsOn(s)).toEqual([]);
  });

  it('listen on an unbound TCP socket is a wildcard bind: 403, and no listen syscall', async () => {
    t = await startApp();
    for (const family of ['inet', 'inet6']) {
      const s = await create(TOKEN, family);
      const r = await call(TOKEN, 'POST', `/v1/sockets/${s.id}/listen`, {});
      expect(r.status, JSON.stringify(r.body)).toBe(403);
      expect(r.body.message).toMatch(/^bind denied by policy rule builtin\.bind\.allow: (0\.0\.0\.0|::) is not in/);
      expect(syscallsOn(s)).toEqual([]);
      const after = (await call(TOKEN, 'GET', `/v1/sockets/${s.id}`)).body;
      expect(after).toMatchObject({ state: 'created', local: null });
      expect(after.kernel.tcpState).toBe('CLOSE');
    }
    // once bound to loopback, listen is fine
    const s = await create(TOKEN, 'inet');
    expect((await call(TOKEN, 'POST', `/v1/sockets/${s.id}/bind`, { address: '127.0.0.1', port: 0 })).status).toBe(200);
    expect((await call(TOKEN, 'POST', `/v1/sockets/${s.id}/listen`, {})).status).toBe(200);
    expect(syscallsOn(s).map((c) => c.syscall)).toEqual(['bind', 'listen']);
  });

  it('raw sockets are refused with 403 (inet and inet6)', async () => {
    t = await startApp({}, { tokens: TOKENS });
    for (const token of [TOKEN, ALICE])
      for (const [family, protocol] of [
        ['inet', 'IPPROTO_ICMP'],
        ['inet6', 'IPPROTO_ICMPV6'],
      ]) {
        const r = await call(token, 'POST', '/v1/sockets', { family, type: 'raw', protocol });
        expect(r.status, JSON.stringify(r.body)).toBe(403);
        expect(r.body).toMatchObject({ code: 'SOCKCTL_FORBIDDEN', message: expect.stringContaining('raw') });
      }
  });
});

describe('a bypass corpus of address spellings', () => {
  /** Each spelling: 400 (inet_pton would not take it), or the decision its normalised address deserves. */
  const CORPUS: [string, 400 | 'allow' | 'deny', string?][] = [
    ['127.1', 400],
    ['0', 400],
    ['017700000001', 400],
    ['0x7f000001', 400],
    ['0x7f.0.0.1', 400],
    ['0177.0.0.1', 400],
    ['2130706433', 400],
    ['127.0.0.1.', 400],
    [' 127.0.0.1', 400],
    ['127.0.0.1 ', 400],
    ['127.000.000.001', 400],
    ['127.0.0.01', 400],
    ['[::1]', 400],
    ['[::1]:5000', 400],
    ['127.0.0.1:5000', 400],
    ['127.0.0.1/32', 400],
    ['localhost', 400],
    ['metadata.google.internal', 400],
    ['::ffff:127.0.0.1%', 400],
    ['0:0:0:0:0:ffff:7f00:1', 'allow', '127.0.0.1'],
    ['::ffff:7f00:1', 'allow', '127.0.0.1'],
    ['::FFFF:127.0.0.1', 'allow', '127.0.0.1'],
    ['0000:0000:0000:0000:0000:0000:0000:0001', 'allow', '::1'],
    ['::0:1', 'allow', '::1'],
    ['::ffff:0a00:0001', 'deny', '10.0.0.1'],
    ['::ffff:a9fe:a9fe', 'deny', '169.254.169.254'],
    ['::ffff:0:0', 'deny', '0.0.0.0'],
    ['::ffff:0:7f00:1', 'deny'], // SIIT (::ffff:0:0/96) is not IPv4-mapped
    ['::7f00:1', 'deny'], // IPv4-compatible ::127.0.0.1: not loopback to the kernel
    ['::127.0.0.1', 'deny'], // the same, dotted (ipaddr.js alone would read it as ::ffff:127.0.0.1)
    ['0:0:0:0:0:0:127.0.0.1', 'deny'],
    ['64:ff9b::7f00:1', 'deny'], // NAT64 of 127.0.0.1 leaves the host
    ['fe80::1%lo', 'deny'],
  ];

  it('unit: each spelling normalises (inetSockAddr, what the routes use) and is classified by AddressPolicy.decide', () => {
    const policy = builtin();
    for (const [spelling, expected, shown] of CORPUS) {
      let sa: SockAddr;
      try {
        sa = inetSockAddr({ address: spelling, port: 5000 });
      } catch (e) {
        expect(e, spelling).toBeInstanceOf(SockctlError);
        expect((e as SockctlError).statusCode, spelling).toBe(400);
        expect(expected, `${spelling} was refused as malformed`).toBe(400);
        continue;
      }
      expect(expected, `${spelling} was accepted as ${JSON.stringify(sa)}`).not.toBe(400);
      for (const op of ['bind', 'connect', 'sendto'] as const)
        for (const user of [admin, alice]) {
          const d = policy.decide(user, op, sa);
          expect(d.allowed, `${op} ${spelling}: ${JSON.stringify(d)}`).toBe(expected === 'allow');
          if (expected === 'deny') expect(d.rule).toBe(`builtin.${op}.allow`);
          if (shown && expected === 'deny') expect(d.reason).toContain(`${shown} is not in`);
        }
    }
    // and every denied destination of the default policy, as the unit sees it
    for (const address of DENIED) {
      const sa = inetSockAddr({ address, port: 5000 });
      for (const op of ['bind', 'connect', 'sendto'] as const) expect(policy.decide(alice, op, sa).allowed, `${op} ${address}`).toBe(false);
    }
  });

  it('through HTTP: 400 or the right decision, and never a connect syscall for a spelling that is not allowed', async () => {
    t = await startApp();
    const v4 = await server('127.0.0.1');
    const v6 = await server('::1');
    for (const [spelling, expected, shown] of CORPUS) {
      const port = shown === '::1' ? v6 : v4;
      const res = await attempt(TOKEN, 'connect', spelling, port);
      const what = `connect '${spelling}': ${res.r.status} ${JSON.stringify(res.r.body)}`;
      if (expected === 400) {
        expect(res.r.status, what).toBe(400);
        expect(res.made, what).toEqual([]);
        expect(res.after.state, what).toBe('created');
        expect(res.after.kernel.tcpState, what).not.toBe('SYN_SENT');
      } else if (expected === 'deny') {
        expectDenied(res, 'connect', /builtin\.connect\.allow/, what);
      } else {
        expect(res.r.status, what).toBe(200);
        expect(res.after.state, what).toBe('connected');
        expect(res.made.length, what).toBeGreaterThan(0);
        // connected to the loopback listener it names
        expect(res.after.remote.port, what).toBe(port);
      }
    }
  });
});

describe('Unix paths', () => {
  it("a user's relative path resolves in SOCKCTL_UNIX_DIR/<name>/; anything outside it is 403 before any syscall", async () => {
    t = await startApp({}, { tokens: TOKENS });
    const dir = t.unixDir;
    const outside = mkdtempSync(join(tmpdir(), 'sc-out-'));
    try {
      // alice's relative path lands in her directory, bob's in his, the admin's in the service's
      const a = await create(ALICE, 'unix');
      const ra = await call(ALICE, 'POST', `/v1/sockets/${a.id}/bind`, { path: 'a.sock' });
      expect(ra.status, JSON.stringify(ra.body)).toBe(200);
      expect(ra.body.local).toEqual({ path: join(dir, 'alice', 'a.sock') });
      const b = await create(BOB, 'unix', 'dgram');
      const rb = await call(BOB, 'POST', `/v1/sockets/${b.id}/bind`, { path: 'b.sock' });
      expect(rb.body.local).toEqual({ path: join(dir, 'bob', 'b.sock') });
      const adm = await create(TOKEN, 'unix');
      expect((await call(TOKEN, 'POST', `/v1/sockets/${adm.id}/bind`, { path: 'adm.sock' })).body.local).toEqual({ path: join(dir, 'adm.sock') });
      expect((await call(ALICE, 'POST', `/v1/sockets/${a.id}/listen`, {})).status).toBe(200);

      // a directory link out of alice's directory (the kernel would follow it)
      symlinkSync(outside, join(dir, 'alice', 'out'));
      symlinkSync(join(dir, 'bob', 'b.sock'), join(dir, 'alice', 'to-bob.sock'));

      const refused: [string, 'bind' | 'connect' | 'sendto', string][] = [
        ['absolute path elsewhere', 'bind', '/tmp/sockctl-outside.sock'],
        ['absolute path elsewhere', 'connect', '/var/run/docker.sock'],
        ['absolute path elsewhere', 'sendto', '/dev/log'],
        ["bob's directory, absolute", 'bind', join(dir, 'bob', 'x.sock')],
        ["bob's directory, absolute", 'connect', join(dir, 'bob', 'b.sock')],
        ["bob's directory, absolute", 'sendto', join(dir, 'bob', 'b.sock')],
        ["bob's directory, relative", 'sendto', '../bob/b.sock'],
        ["bob's directory, through ..", 'connect', 'sub/../../bob/b.sock'],
        ["the service's directory", 'bind', '../escape.sock'],
        ["the service's directory", 'connect', join(dir, 'adm.sock')],
        ['a sibling of the service directory', 'bind', `${dir}-sibling/x.sock`],
        ['a directory symlink out', 'bind', 'out/x.sock'],
        ['a symlink to a socket of bob', 'connect', 'to-bob.sock'],
        ['a symlink to a socket of bob', 'sendto', 'to-bob.sock'],
        ['the abstract namespace', 'bind', '@abstract'],
        ['the abstract namespace', 'connect', '@abstract'],
        ['the abstract namespace', 'sendto', '@abstract'],
      ];
      for (const [what, op, path] of refused) {
        const s = await create(ALICE, 'unix', op === 'sendto' ? 'dgram' : 'stream');
        const r =
          op === 'sendto'
            ? await call(ALICE, 'POST', `/v1/sockets/${s.id}/send`, { data: 'x', to: { path } })
            : await call(ALICE, 'POST', `/v1/sockets/${s.id}/${op}`, { path });
        const label = `${op} ${path} (${what}): ${JSON.stringify(r.body)}`;
        expect(r.status, label).toBe(403);
        expect(r.body.code, label).toBe('SOCKCTL_FORBIDDEN');
        expect(r.body.message, label).toMatch(new RegExp(`^${op} denied by policy rule \\S+: `));
        expect(syscallsOn(s), label).toEqual([]);
        expect((await call(ALICE, 'GET', `/v1/sockets/${s.id}`)).body.local, label).toBeNull();
      }
      expect(readdirSync(outside)).toEqual([]);
      expect(readdirSync(join(dir, 'bob'))).toEqual(['b.sock']);
      // bob's own socket is his to use, and alice's to nobody else
      const b2 = await create(BOB, 'unix', 'dgram');
      expect((await call(BOB, 'POST', `/v1/sockets/${b2.id}/send`, { data: 'hi', to: { path: 'b.sock' } })).status).toBe(200);
      const c = await create(BOB, 'unix');
      expect((await call(BOB, 'POST', `/v1/sockets/${c.id}/connect`, { path: join(dir, 'alice', 'a.sock') })).status).toBe(403);
      // the admin reaches every user's directory (their directories are inside the admin's)
      const ac = await create(TOKEN, 'unix');
      expect((await call(TOKEN, 'POST', `/v1/sockets/${ac.id}/connect`, { path: join(dir, 'alice', 'a.sock') })).status).toBe(200);
    } finally {
      rmSync(outside, { recursive: true, force: true });
    }
  });

  it('the admin is held to SOCKCTL_UNIX_DIR too, and a symlink out of it does not widen that', async () => {
    t = await startApp();
    const outside = mkdtempSync(join(tmpdir(), 'sc-out-'));
    try {
      symlinkSync(outside, join(t.unixDir, 'out'));
      for (const path of ['/tmp/sockctl-admin.sock', '../x.sock', 'out/x.sock', '@abs']) {
        const s = await create(TOKEN, 'unix');
        const r = await call(TOKEN, 'POST', `/v1/sockets/${s.id}/bind`, { path });
        expect(r.status, `${path}: ${JSON.stringify(r.body)}`).toBe(403);
        expect(syscallsOn(s)).toEqual([]);
      }
      expect(readdirSync(outside)).toEqual([]);
    } finally {
      rmSync(outside, { recursive: true, force: true });
    }
  });

  it('the operator can open the abstract namespace and outside paths (config switches)', async () => {
    t = await startApp({ unixAllowAbstract: true });
    const s = await create(TOKEN, 'unix');
    const name = `@sockctl-test-${process.pid}-${Date.now()}`;
    const r = await call(TOKEN, 'POST', `/v1/sockets/${s.id}/bind`, { path: name });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.local).toEqual({ path: name });
  });
});

describe('a policy file', () => {
  it('narrows one user: alice may connect to 127.0.0.0/8 on ports 5000-5010 only; bob keeps the default', async () => {
    t = await startApp({}, { tokens: TOKENS, policy: { users: { alice: { connect: { allow: ['127.0.0.0/8'], ports: ['5000-5010'] } } } } });
    // a listener inside the range, if one of its ports is free here
    let inRange = 0;
    for (let p = 5000; p <= 5010 && inRange === 0; p++) inRange = await server('127.0.0.1', p).catch(() => 0);
    const outRange = await server('127.0.0.1');
    if (inRange !== 0) {
      const r = await attempt(ALICE, 'connect', '127.0.0.1', inRange);
      expect(r.r.status, JSON.stringify(r.r.body)).toBe(200);
    }
    // in range without a listener: passed to the kernel, which refuses (or connected if someone listens)
    const free = await attempt(ALICE, 'connect', '127.0.0.1', 5010);
    expect([200, 502]).toContain(free.r.status);
    expect(free.made.length).toBeGreaterThan(0);
    expectDenied(await attempt(ALICE, 'connect', '127.0.0.1', outRange), 'connect', /users\.alice\.connect\.ports: port \d+ is not in 5000-5010/, 'alice out of range');
    expectDenied(await attempt(ALICE, 'connect', '127.0.0.1', 4999), 'connect', /users\.alice\.connect\.ports/, 'alice 4999');
    expectDenied(await attempt(ALICE, 'connect', '127.0.0.1', 5011), 'connect', /users\.alice\.connect\.ports/, 'alice 5011');
    // her rule replaced the default connect rule: ::1 is no longer in her allow list
    expectDenied(await attempt(ALICE, 'connect', '::1', 5005), 'connect', /users\.alice\.connect\.allow/, 'alice ::1');
    // her bind and sendto rules are still the defaults
    expect((await attempt(ALICE, 'bind', '127.0.0.1', 0)).r.status).toBe(200);
    expectDenied(await attempt(ALICE, 'bind', '127.0.0.1', 5005 - 5000 + 80), 'bind', /builtin\.bind\.ports/, 'alice bind :85');
    // bob: the default rule
    expect((await attempt(BOB, 'connect', '127.0.0.1', outRange)).r.status).toBe(200);
    expectDenied(await attempt(BOB, 'connect', '10.0.0.1', 5005), 'connect', /builtin\.connect\.allow/, 'bob 10.0.0.1');
  });

  it('a deny entry wins over an allow entry (in every spelling of the address)', async () => {
    t = await startApp(
      {},
      {
        tokens: TOKENS,
        policy: {
          default: { connect: { allow: ['127.0.0.0/8', '::1/128'], deny: ['127.0.0.2/32', '::1/128'], ports: ['1024-65535'] } },
          roles: { user: { sendto: { allow: ['127.0.0.0/8'], deny: ['::ffff:127.0.0.3/128'] } } },
        },
      },
    );
    const v4 = await server('127.0.0.1');
    expect((await attempt(ALICE, 'connect', '127.0.0.1', v4)).r.status).toBe(200);
    for (const address of ['127.0.0.2', '::ffff:127.0.0.2', '0:0:0:0:0:ffff:7f00:2'])
      expectDenied(await attempt(ALICE, 'connect', address, v4), 'connect', /default\.connect\.deny\[0\]: 127\.0\.0\.2 is in 127\.0\.0\.2\/32/, address);
    expectDenied(await attempt(TOKEN, 'connect', '::1', v4), 'connect', /default\.connect\.deny\[1\]/, '::1');
    // a role's rule: an IPv4-mapped deny covers the IPv4 spelling too
    expectDenied(await attempt(BOB, 'sendto', '127.0.0.3', 9), 'sendto', /roles\.user\.sendto\.deny\[0\]/, 'sendto 127.0.0.3');
    // the role's sendto rule replaced the built-in one whole: it has no port list, so port 9 passes
    expect((await attempt(BOB, 'sendto', '127.0.0.4', 9)).r.status).toBe(200);
    // the admin is not in the role: the built-in sendto rule (loopback, ports 0 and >= 1024)
    expect((await attempt(TOKEN, 'sendto', '127.0.0.3', 5999)).r.status).toBe(200);
    expectDenied(await attempt(TOKEN, 'sendto', '127.0.0.3', 9), 'sendto', /builtin\.sendto\.ports/, 'admin sendto :9');
  });

  it('reload() applies a changed policy file; a broken one is refused and the old policy stays', async () => {
    t = await startApp({}, { tokens: TOKENS, policy: {} });
    const file = join(t.unixDir, 'policy.json');
    const v4 = await server('127.0.0.1');
    expect((await attempt(ALICE, 'connect', '127.0.0.1', v4)).r.status).toBe(200);
    writeFileSync(file, JSON.stringify({ users: { alice: { connect: { allow: [] } } } }));
    t.app.policy.reload();
    expectDenied(await attempt(ALICE, 'connect', '127.0.0.1', v4), 'connect', /users\.alice\.connect\.allow/, 'after reload');
    writeFileSync(file, JSON.stringify({ users: { alice: { connect: { allow: ['127.0.0.0/88'] } } } }));
    expect(() => t!.app.policy.reload()).toThrow();
    expectDenied(await attempt(ALICE, 'connect', '127.0.0.1', v4), 'connect', /users\.alice\.connect\.allow/, 'after a failed reload');
  });

  it('an invalid policy file makes buildApp throw with a message naming the problem', async () => {
    const bad: [unknown, RegExp][] = [
      [{ default: { connect: { allow: ['10.0.0.0/33'] } } }, /10\.0\.0\.0\/33/],
      [{ default: { connect: { allow: ['banana'] } } }, /banana/],
      [{ users: { alice: { bind: { deny: ['127.0.0.1'] } } } }, /127\.0\.0\.1/], // a CIDR needs its prefix length
      [{ default: { connect: { ports: ['http'] } } }, /policy\.json/],
      [{ default: { connect: { ports: ['70000'] } } }, /70000/],
      [{ default: { connect: { ports: ['2000-1000'] } } }, /2000-1000/],
      [{ default: { connect: { alow: ['127.0.0.0/8'] } } }, /policy\.json/],
      [{ roles: { superuser: {} } }, /policy\.json/],
      [{ default: { unixPrefixes: ['relative/dir'] } }, /policy\.json/],
    ];
    for (const [policy, message] of bad) {
      const started = startApp({}, { policy });
      await expect(started, JSON.stringify(policy)).rejects.toThrow(message);
    }
  });
});

describe('the guard itself', () => {
  it('is in place: it records the calls and refuses a non-loopback one without calling the kernel', () => {
    const mark = syscalls.length;
    const fd = native.socket(native.constants.AF_INET, native.constants.SOCK_STREAM, 0);
    try {
      expect(() => native.connect(fd, { family: native.constants.AF_INET, address: '192.0.2.1', port: 9 })).toThrow(/test guard/);
      expect(syscallsOn({ fd, mark })).toEqual([{ syscall: 'connect', fd, sa: { family: native.constants.AF_INET, address: '192.0.2.1', port: 9 } }]);
      expect(native.tcpInfo(fd).state).toBe(7); // CLOSE: nothing was sent
    } finally {
      native.close(fd);
    }
  });
});


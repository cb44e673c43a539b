// AF_UNIX over the HTTP API on real sockets: stream, dgram and seqpacket; paths resolved in the service's
// Unix dir and unlinked at close; each errno from the step that causes it; socketpair; interop with
// socat and python3 (the programs of a socket lab); no fd leak.
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fdCount, startApp, until, type Reply, type TestApp } from './helpers.js';

let t: TestApp;
beforeEach(async () => {
  t = await startApp();
});
afterEach(async () => {
  await t.close();
});

const ERRNO = constants.errno as Record<string, number>;
const socat = spawnSync('socat', ['-V'], { stdio: 'ignore' }).status === 0;

type Kind = 'stream' | 'dgram' | 'seqpacket';

async function create(type: Kind): Promise<string> {
  const r = await t.call('POST', '/v1/sockets', { family: 'unix', type });
  expect(r.status).toBe(201);
  expect(r.body).toMatchObject({ family: 'AF_UNIX', protocol: 0, state: 'created', local: null, remote: null });
  return r.body.id;
}
const get = async (id: string) => (await t.call('GET', `/v1/sockets/${id}`)).body;
const post = (id: string, op: string, body: object = {}) => t.call('POST', `/v1/sockets/${id}/${op}`, body);
const del = (id: string) => t.call('DELETE', `/v1/sockets/${id}`);

async function bound(type: Kind, path: string): Promise<string> {
  const id = await create(type);
  const r = await post(id, 'bind', { path });
  expect(r.status).toBe(200);
  expect(r.body.state).toBe('bound');
  return id;
}

async function listening(path: string, type: Kind = 'stream', backlog = 4): Promise<string> {
  const id = await bound(type, path);
  const r = await post(id, 'listen', { backlog });
  expect(r.status).toBe(200);
  expect(r.body.state).toBe('listening');
  return id;
}

/** A connected pair over a path: client c and the accepted socket a. */
async function pair(type: Kind = 'stream', path = 'p.sock'): Promise<{ l: string; c: string; a: string }> {
  const l = await listening(path, type);
  const c = await create(type);
  const cr = await post(c, 'connect', { path });
  expect(cr.status).toBe(200);
  expect(cr.body.state).toBe('connected');
  const a = await post(l, 'accept', { timeoutMs: 1000 });
  expect(a.status).toBe(201);
  return { l, c, a: a.body.id };
}

/** A syscall failure, with errno checked against os.constants, not copied from the service. */
function expectErrno(r: Reply<any>, status: number, code: string, syscall: string): void {
  expect(r.status).toBe(status);
  expect(r.body).toMatchObject({ statusCode: status, code, errno: ERRNO[code], syscall });
}

/** Reads from a stream until `n` bytes arrived. */
async function recvText(id: string, n: number): Promise<string> {
  let out = '';
  while (out.length < n) {
    const r = await post(id, 'recv', { timeoutMs: 2000 });
    expect(r.status).toBe(200);
    expect(r.body.eof).toBe(false);
    out += r.body.data;
  }
  return out;
}

describe('AF_UNIX SOCK_STREAM', () => {
  // The lab session over a path: bind (relative → inside the dir), listen, accept, connect, data, shutdown, close.
  it('runs bind/listen/connect/accept/send/recv/shutdown/close and unlinks the path at close', async () => {
    const abs = join(t.unixDir, 's.sock');
    const l = await create('stream');
    const b = await post(l, 'bind', { path: 's.sock' });
    expect(b.status).toBe(200);
    expect(b.body.local).toEqual({ path: abs });
    expect(existsSync(abs)).toBe(true);
    const lr = await post(l, 'listen', { backlog: 2 });
    expect(lr.body).toMatchObject({ state: 'listening', backlog: 2, local: { path: abs } });

    const c = await create('stream');
    // an absolute path inside the dir is accepted as is
    const cr = await post(c, 'connect', { path: abs });
    expect(cr.status).toBe(200);
    // the client never bound: the kernel gives it no name; its peer is the listener's path
    expect(cr.body).toMatchObject({ state: 'connected', local: null, remote: { path: abs } });

    const a = await post(l, 'accept', { timeoutMs: 1000 });
    expect(a.status).toBe(201);
    // the accepted socket carries the listener's name; its unnamed peer is {path: null}
    expect(a.body).toMatchObject({ state: 'connected', listener: l, local: { path: abs }, remote: { path: null } });
    const aid = a.body.id;

    expect((await post(c, 'send', { data: 'hello unix' })).body).toEqual({ bytes: 10 });
    expect(await recvText(aid, 10)).toBe('hello unix');
    expect((await post(aid, 'send', { data: 'cmVwbHk=', encoding: 'base64' })).body).toEqual({ bytes: 5 });
    expect(await recvText(c, 5)).toBe('reply');

    const sh = await post(c, 'shutdown', { how: 'SHUT_WR' });
    expect(sh.status).toBe(200);
    expect(sh.body.shutdown).toEqual({ read: false, write: true });
    expect((await post(aid, 'recv', { timeoutMs: 1000 })).body).toMatchObject({ bytes: 0, eof: true });
    // the other direction still works after a half close
    expect((await post(aid, 'send', { data: 'late' })).body).toEqual({ bytes: 4 });
    expect(await recvText(c, 4)).toBe('late');
    expectErrno(await post(c, 'send', { data: 'x' }), 409, 'EPIPE', 'send');

    expect((await del(aid)).body.state).toBe('closed');
    expect((await post(c, 'recv', { timeoutMs: 1000 })).body).toMatchObject({ bytes: 0, eof: true });
    expect((await del(c)).status).toBe(200);
    // the accepted socket shares the path but did not bind it: closing it leaves the file
    expect(existsSync(abs)).toBe(true);
    const closed = await del(l);
    expect(closed.body).toMatchObject({ state: 'closed', local: { path: abs } });
    expect(existsSync(abs)).toBe(false);
    // the path is free again
    await listening('s.sock');
  });

  it('unlinks every bound path at app.close()', async () => {
    await listening('x.sock');
    await bound('dgram', 'y.sock');
    await bound('seqpacket', 'z.sock');
    const paths = ['x.sock', 'y.sock', 'z.sock'].map((p) => join(t.unixDir, p));
    for (const p of paths) expect(existsSync(p)).toBe(true);
    await t.app.close();
    for (const p of paths) expect(existsSync(p)).toBe(false);
  });
});

describe('AF_UNIX errors', () => {
  it('connect to a missing path is 409 ENOENT', async () => {
    const c = await create('stream');
    const r = await post(c, 'connect', { path: 'missing.sock' });
    expectErrno(r, 409, 'ENOENT', 'connect');
    expect(r.body.message).toContain(join(t.unixDir, 'missing.sock'));
    expect((await get(c)).state).toBe('created');
  });

  it('bind to an existing path is 409 EADDRINUSE (a socket, or any file)', async () => {
    await bound('stream', 'taken.sock');
    const s = await create('stream');
    expectErrno(await post(s, 'bind', { path: 'taken.sock' }), 409, 'EADDRINUSE', 'bind');
    writeFileSync(join(t.unixDir, 'plain-file'), 'x');
    expectErrno(await post(s, 'bind', { path: 'plain-file' }), 409, 'EADDRINUSE', 'bind');
    expect((await get(s)).state).toBe('created');
    // the failed bind does not make the socket own (and later unlink) the other file
    await del(s);
    expect(existsSync(join(t.unixDir, 'plain-file'))).toBe(true);
    expect(existsSync(join(t.unixDir, 'taken.sock'))).toBe(true);
  });

  it('connect to a bound socket that is not listening is 502 ECONNREFUSED', async () => {
    await bound('stream', 'quiet.sock');
    const c = await create('stream');
    expectErrno(await post(c, 'connect', { path: 'quiet.sock' }), 502, 'ECONNREFUSED', 'connect');
    const after = await get(c);
    expect(after.state).toBe('created');
    expect(after.lastError).toMatchObject({ code: 'ECONNREFUSED', errno: ERRNO.ECONNREFUSED });
  });

  it('connect to a stale socket file (its owner exited without unlink) is 502 ECONNREFUSED', async () => {
    const stale = join(t.unixDir, 'stale.sock');
    // not execFileSync: the app runs in this process, and its event loop must keep turning
    await promisify(execFile)('python3', ['-c', 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])', stale]);
    expect(existsSync(stale)).toBe(true);
    const c = await create('stream');
    expectErrno(await post(c, 'connect', { path: 'stale.sock' }), 502, 'ECONNREFUSED', 'connect');
    // and the stale file makes a bind fail, as in C
    expectErrno(await post(c, 'bind', { path: 'stale.sock' }), 409, 'EADDRINUSE', 'bind');
  });

  it('connecting a SOCK_STREAM to a SOCK_DGRAM path is 409 EPROTOTYPE', async () => {
    await bound('dgram', 'd.sock');
    const c = await create('stream');
    expectErrno(await post(c, 'connect', { path: 'd.sock' }), 409, 'EPROTOTYPE', 'connect');
    const q = await create('seqpacket');
    expectErrno(await post(q, 'connect', { path: 'd.sock' }), 409, 'EPROTOTYPE', 'connect');
  });

  it('a path longer than sun_path is 400 with a clear message, before any syscall', async () => {
    const s = await create('stream');
    const long = 'n'.repeat(110);
    for (const op of ['bind', 'connect']) {
      const r = await post(s, op, { path: long });
      expect(r.status).toBe(400);
      expect(r.body.code).toBe('SOCKCTL_BAD_REQUEST');
      expect(r.body.message).toMatch(/sun_path/);
      expect(r.body.message).toContain(`${join(t.unixDir, long)}`);
      expect(r.body.errno).toBeUndefined();
    }
    const d = await create('dgram');
    const r = await post(d, 'send', { data: 'x', to: { path: long } });
    expect(r.status).toBe(400);
    expect(r.body.message).toMatch(/sun_path/);
    // the longest path that fits (107 bytes + NUL) binds
    const fit = 107 - (t.unixDir.length + 1);
    const ok = await post(s, 'bind', { path: 'f'.repeat(fit) });
    expect(ok.status).toBe(200);
    expect(Buffer.byteLength(ok.body.local.path)).toBe(107);
  });

  it('a path outside the dir is 403; an inet address on a Unix socket is 400', async () => {
    const s = await create('stream');
    for (const path of ['/tmp/outside.sock', '../escape.sock', `${t.unixDir}-sibling/x.sock`]) {
      const r = await post(s, 'bind', { path });
      expect(r.status).toBe(403);
      expect(r.body.code).toBe('SOCKCTL_FORBIDDEN');
    }
    expect((await post(s, 'connect', { path: '/tmp/outside.sock' })).status).toBe(403);
    expect((await post(s, 'bind', { address: '127.0.0.1', port: 0 })).status).toBe(400);
    expect(existsSync('/tmp/outside.sock')).toBe(false);
  });

  it('the abstract namespace is 403 by default', async () => {
    const s = await create('stream');
    const r = await post(s, 'bind', { path: '@sockctl-test' });
    expect(r.status).toBe(403);
    expect(r.body.code).toBe('SOCKCTL_FORBIDDEN');
    expect(r.body.message).toMatch(/abstract/);
    expect((await post(s, 'connect', { path: '@sockctl-test' })).status).toBe(403);
  });
});

describe('the abstract namespace, when allowed', () => {
  it('binds, listens, connects and exchanges bytes over @name (no file)', async () => {
    await t.close();
    t = await startApp({ unixAllowAbstract: true });
    const name = `@sockctl-test-${process.pid}-${Date.now()}`;
    const l = await listening(name);
    expect((await get(l)).local).toEqual({ path: name });
    const c = await create('stream');
    const cr = await post(c, 'connect', { path: name });
    expect(cr.status).toBe(200);
    expect(cr.body.remote).toEqual({ path: name });
    const a = (await post(l, 'accept', { timeoutMs: 1000 })).body.id;
    await post(c, 'send', { data: 'abstract' });
    expect(await recvText(a, 8)).toBe('abstract');
    const view = (await t.call('GET', `/v1/sockets/${l}?view=sockaddr`)).body.sockaddr.local;
    // sun_path starts with a NUL byte, then the name, no terminator
    expect(view.hex).toBe('0100' + '00' + Buffer.from(name.slice(1)).toString('hex'));
    await del(l);
    // a second bind of the name after close works: nothing to unlink in the abstract namespace
    await listening(name);
  });
});

describe('AF_UNIX SOCK_SEQPACKET', () => {
  it('keeps message boundaries: three sends of different sizes, three recvs of the same sizes', async () => {
    const { c, a } = await pair('seqpacket');
    const sizes = [1, 300, 5000];
    for (const n of sizes) {
      expect((await post(c, 'send', { data: 'q'.repeat(n) })).body).toEqual({ bytes: n });
    }
    for (const n of sizes) {
      const r = await post(a, 'recv', { maxBytes: 65536, timeoutMs: 1000 });
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({ bytes: n, eof: false, truncated: false });
      expect(r.body.data).toBe('q'.repeat(n));
    }
    // a shorter read of a record loses its tail (MSG_TRUNC), and the next read is the next record
    await post(c, 'send', { data: 'abcdef' });
    await post(c, 'send', { data: 'next' });
    expect((await post(a, 'recv', { maxBytes: 3, timeoutMs: 1000 })).body).toMatchObject({ data: 'abc', truncated: true });
    expect((await post(a, 'recv', { maxBytes: 100, timeoutMs: 1000 })).body).toMatchObject({ data: 'next', truncated: false });
    // the peer's close is EOF
    await del(c);
    expect((await post(a, 'recv', { timeoutMs: 1000 })).body).toMatchObject({ bytes: 0, eof: true });
  });
});

describe('AF_UNIX SOCK_DGRAM', () => {
  it('recvfrom reports the sender path, and null for an unbound sender; boundaries kept', async () => {
    const rx = await bound('dgram', 'rx.sock');
    const tx = await bound('dgram', 'tx.sock');
    expect((await post(tx, 'send', { data: 'one', to: { path: 'rx.sock' } })).body).toEqual({ bytes: 3 });
    expect((await post(tx, 'send', { data: 'second', to: { path: 'rx.sock' } })).body).toEqual({ bytes: 6 });
    const anon = await create('dgram');
    expect((await post(anon, 'send', { data: 'anon', to: { path: join(t.unixDir, 'rx.sock') } })).status).toBe(200);
    // a Unix sendto does not bind the sender (no autobind): it stays created, unnamed
    expect((await get(anon)).local).toBeNull();

    const r1 = await post(rx, 'recv', { timeoutMs: 1000 });
    expect(r1.body).toEqual({ data: 'one', encoding: 'utf8', bytes: 3, eof: false, from: { path: join(t.unixDir, 'tx.sock') }, truncated: false });
    const r2 = await post(rx, 'recv', { timeoutMs: 1000 });
    expect(r2.body).toMatchObject({ data: 'second', bytes: 6, from: { path: join(t.unixDir, 'tx.sock') } });
    const r3 = await post(rx, 'recv', { timeoutMs: 1000 });
    expect(r3.body).toMatchObject({ data: 'anon', bytes: 4, from: null });
    // and in raw mode the sender is in the header (empty for an unnamed one)
    await post(tx, 'send', { data: 'hdr', to: { path: 'rx.sock' } });
    const raw = await t.call('POST', `/v1/sockets/${rx}/recv`, { timeoutMs: 1000 }, { accept: 'application/octet-stream' });
    expect(raw.headers['sockctl-from']).toBe(join(t.unixDir, 'tx.sock'));
    expect(raw.raw.toString()).toBe('hdr');

    // the receiver answers the sender by the path it reported
    await post(rx, 'send', { data: 'back', to: r1.body.from });
    expect((await post(tx, 'recv', { timeoutMs: 1000 })).body).toMatchObject({ data: 'back', from: { path: join(t.unixDir, 'rx.sock') } });
    // a zero-byte datagram is data, not EOF
    await post(tx, 'send', { data: '', to: { path: 'rx.sock' } });
    expect((await post(rx, 'recv', { timeoutMs: 1000 })).body).toMatchObject({ bytes: 0, eof: false });
  });

  it('connected datagram sockets: send without to; sendto a missing path is ENOENT; a closed peer is ECONNREFUSED', async () => {
    const rx = await bound('dgram', 'rx.sock');
    const tx = await create('dgram');
    expectErrno(await post(tx, 'send', { data: 'x', to: { path: 'gone.sock' } }), 409, 'ENOENT', 'sendto');
    expectErrno(await post(tx, 'send', { data: 'x' }), 409, 'ENOTCONN', 'send');
    const c = await post(tx, 'connect', { path: 'rx.sock' });
    expect(c.body).toMatchObject({ state: 'connected', remote: { path: join(t.unixDir, 'rx.sock') } });
    expect((await post(tx, 'send', { data: 'hi' })).body).toEqual({ bytes: 2 });
    expect((await post(rx, 'recv', { timeoutMs: 1000 })).body).toMatchObject({ data: 'hi', from: null });
    await del(rx);
    expect(existsSync(join(t.unixDir, 'rx.sock'))).toBe(false);
    expectErrno(await post(tx, 'send', { data: 'x' }), 502, 'ECONNREFUSED', 'send');
  });
});

describe('socketpair', () => {
  it('stream: bytes round-trip both ways, the peer is {path: null}, closing one end is EOF at the other', async () => {
    const r = await t.call('POST', '/v1/socketpairs', { type: 'stream', label: 'sp' });
    expect(r.status).toBe(201);
    const [a, b] = r.body.sockets;
    for (const s of [a, b]) {
      expect(s).toMatchObject({ family: 'AF_UNIX', type: 'SOCK_STREAM', protocol: 0, state: 'connected', label: 'sp' });
      expect(s.local).toBeNull();
      expect(s.remote).toEqual({ path: null });
    }
    expect((await post(a.id, 'send', { data: 'to b' })).body).toEqual({ bytes: 4 });
    expect(await recvText(b.id, 4)).toBe('to b');
    expect((await post(b.id, 'send', { data: 'to a!' })).body).toEqual({ bytes: 5 });
    expect(await recvText(a.id, 5)).toBe('to a!');
    expect((await del(a.id)).body.state).toBe('closed');
    expect((await post(b.id, 'recv', { timeoutMs: 1000 })).body).toMatchObject({ bytes: 0, eof: true });
    expectErrno(await post(b.id, 'send', { data: 'x' }), 409, 'EPIPE', 'send');
    // as in C: Linux keeps the survivor's peer pointer, so getpeername() still answers (unnamed)
    expect((await get(b.id))).toMatchObject({ state: 'connected', remote: { path: null } });
  });

  it('seqpacket and dgram: boundaries kept both ways', async () => {
    for (const type of ['seqpacket', 'dgram'] as const) {
      const r = await t.call('POST', '/v1/socketpairs', { type });
      expect(r.status).toBe(201);
      const [a, b] = r.body.sockets;
      expect(a.type).toBe(type === 'dgram' ? 'SOCK_DGRAM' : 'SOCK_SEQPACKET');
      expect(a.remote).toEqual({ path: null });
      await post(a.id, 'send', { data: 'aa' });
      await post(a.id, 'send', { data: 'bbbb' });
      await post(b.id, 'send', { data: 'ccc' });
      expect((await post(b.id, 'recv', { timeoutMs: 1000 })).body).toMatchObject({ data: 'aa', bytes: 2 });
      expect((await post(b.id, 'recv', { timeoutMs: 1000 })).body).toMatchObject({ data: 'bbbb', bytes: 4 });
      const back = (await post(a.id, 'recv', { timeoutMs: 1000 })).body;
      expect(back).toMatchObject({ data: 'ccc', bytes: 3 });
      // a socketpair end has no name: recvfrom's sender is null
      expect(back.from).toBeNull();
    }
  });

  it('refuses SOCK_RAW with 400', async () => {
    const r = await t.call('POST', '/v1/socketpairs', { type: 'raw' });
    expect(r.status).toBe(400);
  });
});

describe('?view=sockaddr for AF_UNIX', () => {
  it('shows the sockaddr_un bytes: sun_family in host order, then the path and its NUL', async () => {
    const { l, c } = await pair('stream', 'v.sock');
    const abs = join(t.unixDir, 'v.sock');
    const r = await t.call('GET', `/v1/sockets/${l}?view=sockaddr`);
    expect(r.status).toBe(200);
    const local = r.body.sockaddr.local;
    const pathHex = Buffer.from(abs + '\0').toString('hex');
    expect(local).toMatchObject({ struct: 'sockaddr_un', length: 2 + abs.length + 1, hex: '0100' + pathHex });
    expect(local.fields.sun_family).toMatch(/AF_UNIX/);
    expect(local.fields.sun_path.replaceAll(' ', '')).toBe(pathHex);
    expect(r.body.sockaddr.remote).toBeNull();
    // an unnamed client: no local address; its peer is the listener's sockaddr_un
    const cv = (await t.call('GET', `/v1/sockets/${c}?view=sockaddr`)).body.sockaddr;
    expect(cv.local).toBeNull();
    expect(cv.remote.hex).toBe('0100' + pathHex);
  });
});

/** Runs a program, collecting stdout; resolves with its exit code. */
interface Ran {
  code: number | null;
  bytes: Buffer;
  out: string;
  err: string;
}
function run(cmd: string, args: string[], input?: string): { child: ChildProcess; done: Promise<Ran> } {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  const chunks: Buffer[] = [];
  let err = '';
  child.stdout!.on('data', (d: Buffer) => chunks.push(d));
  child.stderr!.on('data', (d) => (err += d));
  if (input !== undefined) child.stdin!.end(input);
  const done = new Promise<Ran>((resolve) =>
    child.on('close', (code) => {
      const bytes = Buffer.concat(chunks);
      resolve({ code, bytes, out: bytes.toString(), err });
    }),
  );
  return { child, done };
}

describe('interop with the programs of a socket lab', () => {
  const children: ChildProcess[] = [];
  afterEach(() => {
    for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
  });

  it.skipIf(!socat)('a socat UNIX-LISTEN server receives what a sockctl client sends', async () => {
    const path = join(t.unixDir, 'socat-srv.sock');
    const p = run('socat', ['-u', `UNIX-LISTEN:${path}`, 'STDOUT']);
    children.push(p.child);
    await until(() => existsSync(path), 'socat to listen');
    const c = await create('stream');
    expect((await post(c, 'connect', { path: 'socat-srv.sock' })).status).toBe(200);
    expect((await post(c, 'send', { data: 'hello socat\n' })).body).toEqual({ bytes: 12 });
    expect((await post(c, 'send', { data: 'AAEC/w==', encoding: 'base64' })).body).toEqual({ bytes: 4 });
    await post(c, 'shutdown', { how: 'SHUT_WR' });
    const res = await p.done;
    expect(res.code).toBe(0);
    expect(res.bytes).toEqual(Buffer.concat([Buffer.from('hello socat\n'), Buffer.from([0, 1, 2, 255])]));
    await del(c);
  });

  it.skipIf(!socat)('a sockctl Unix listener accepts a socat client and exchanges bytes both ways', async () => {
    const l = await listening('srv.sock');
    // -t 5: after its stdin ends, socat waits up to 5 s for the other direction before closing
    const p = run('socat', ['-t', '5', '-', `UNIX-CONNECT:${join(t.unixDir, 'srv.sock')}`], 'ping from socat');
    children.push(p.child);
    const a = await post(l, 'accept', { timeoutMs: 5000 });
    expect(a.status).toBe(201);
    expect(a.body.remote).toEqual({ path: null });
    const id = a.body.id;
    expect(await recvText(id, 15)).toBe('ping from socat');
    expect((await post(id, 'recv', { timeoutMs: 2000 })).body).toMatchObject({ eof: true });
    expect((await post(id, 'send', { data: 'pong from sockctl' })).body).toEqual({ bytes: 17 });
    await post(id, 'shutdown', { how: 'SHUT_WR' });
    const res = await p.done;
    expect(res.code).toBe(0);
    expect(res.out).toBe('pong from sockctl');
    await del(id);
  });

  it('a python3 client talks to a sockctl Unix listener, and a python3 server to a sockctl client', async () => {
    const l = await listening('py.sock');
    const client = `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.sendall(b'from python')
s.shutdown(socket.SHUT_WR)
data = b''
while True:
    chunk = s.recv(4096)
    if not chunk: break
    data += chunk
sys.stdout.write(data.decode())
`;
    const p = run('python3', ['-c', client, join(t.unixDir, 'py.sock')]);
    children.push(p.child);
    const a = (await post(l, 'accept', { timeoutMs: 5000 })).body.id;
    expect(await recvText(a, 11)).toBe('from python');
    expect((await post(a, 'recv', { timeoutMs: 2000 })).body.eof).toBe(true);
    await post(a, 'send', { data: 'from sockctl' });
    await del(a);
    const res = await p.done;
    expect(res).toMatchObject({ code: 0, out: 'from sockctl' });

    // a python3 seqpacket server echoes each record upper-cased: boundaries survive the round trip
    const srvPath = join(t.unixDir, 'pysrv.sock');
    const server = `
import socket, sys, os
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.bind(sys.argv[1]); s.listen(1)
print('ready', flush=True)
c, _ = s.accept()
while True:
    m = c.recv(65536)
    if not m: break
    c.send(m.upper())
c.close(); os.unlink(sys.argv[1])
`;
    const srv = run('python3', ['-c', server, srvPath]);
    children.push(srv.child);
    await until(() => existsSync(srvPath), 'python to listen');
    const c = await create('seqpacket');
    expect((await post(c, 'connect', { path: 'pysrv.sock' })).status).toBe(200);
    for (const m of ['a', 'bb', 'ccc']) await post(c, 'send', { data: m });
    for (const m of ['A', 'BB', 'CCC']) expect((await post(c, 'recv', { timeoutMs: 2000 })).body).toMatchObject({ data: m });
    await del(c);
    expect((await srv.done).code).toBe(0);
  });
});

describe('fd hygiene', () => {
  it('leaks no descriptor across Unix operations, failures included', async () => {
    // warm up the code paths (lazy requires, inject machinery) before counting
    const once = async (i: number) => {
      const { l, c, a } = await pair('stream', `leak-${i}.sock`);
      await post(c, 'send', { data: 'x' });
      await post(a, 'recv', { timeoutMs: 1000 });
      const s = await create('stream');
      await post(s, 'connect', { path: 'missing.sock' }); // ENOENT
      await post(s, 'bind', { path: `leak-${i}.sock` }); // EADDRINUSE
      const q = await bound('stream', `quiet-${i}.sock`);
      await post(s, 'connect', { path: `quiet-${i}.sock` }); // ECONNREFUSED
      await post(s, 'bind', { path: 'y'.repeat(120) }); // 400
      await post(s, 'bind', { path: '/etc/nope' }); // 403
      await post(s, 'accept', { timeoutMs: 0 }); // EINVAL
      const d = await bound('dgram', `d-${i}.sock`);
      await post(s, 'connect', { path: `d-${i}.sock` }); // EPROTOTYPE
      const anon = await create('dgram');
      await post(anon, 'send', { data: 'x', to: { path: `d-${i}.sock` } });
      await post(d, 'recv', { timeoutMs: 1000 });
      await post(d, 'recv', { timeoutMs: 0 }); // EAGAIN
      const sp = (await t.call('POST', '/v1/socketpairs', { type: 'seqpacket' })).body.sockets;
      for (const id of [l, c, a, s, q, d, anon, sp[0].id, sp[1].id]) expect((await del(id)).status).toBe(200);
    };
    await once(0);
    const before = fdCount();
    for (let i = 1; i <= 20; i++) await once(i);
    expect(fdCount()).toBe(before);
    expect(t.app.registry.size.open).toBe(0);
    // every path the service bound is gone; nothing else was created in the dir
    expect(readdirSync(t.unixDir)).toEqual([]);
  });
});

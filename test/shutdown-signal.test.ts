// The real service process (src/main.ts) and SIGTERM: every socket is closed, every Unix path it bound is
// unlinked (and its private Unix dir removed), TCP ports are free again, pending blocking calls end, and
// the process exits 0 promptly.
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { until } from './helpers.js';
import { closedPort } from './ports.js';

const ROOT = join(import.meta.dirname, '..');

interface Service {
  child: ChildProcess;
  base: string;
  token: string;
  stdout: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  call(method: string, path: string, body?: object): Promise<{ status: number; body: any }>;
}

const running: ChildProcess[] = [];
const dirs: string[] = [];
afterEach(() => {
  for (const c of running.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});


/** Whether a fresh listener can take 127.0.0.1:port now. */
async function canBind(port: number): Promise<boolean> {
  const srv = createServer();
  const ok = await new Promise<boolean>((resolve) => {
    srv.once('error', () => resolve(false));
    srv.listen({ port, host: '127.0.0.1', exclusive: true }, () => resolve(true));
  });
  if (ok) await new Promise((resolve) => srv.close(resolve));
  return ok;
}

/** Starts `node --import tsx src/main.ts` with the given environment and waits for /v1/health. */
async function startService(env: Record<string, string>): Promise<Service> {
  const port = closedPort();
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: ROOT,
    env: { ...process.env, SOCKCTL_PORT: String(port), SOCKCTL_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.push(child);
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  const base = `http://127.0.0.1:${port}`;
  await until(async () => (await fetch(`${base}/v1/health`).catch(() => null))?.ok, `the service to start (stderr: ${err})`, 20_000);
  let token = env.SOCKCTL_TOKEN ?? '';
  if (!token) token = (await until(() => /SOCKCTL_TOKEN=(\S+)/.exec(out)?.[1], 'the generated token on stdout'))!;
  return {
    child,
    base,
    token,
    stdout: () => out,
    exited,
    async call(method, path, body) {
      const r = await fetch(`${base}${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
        ...(body ? { body: JSON.stringify(body) } : {}),
      });
      const text = await r.text();
      return { status: r.status, body: text ? JSON.parse(text) : undefined };
    },
  };
}

async function create(s: Service, family: string, type: string): Promise<string> {
  const r = await s.call('POST', '/v1/sockets', { family, type });
  expect(r.status).toBe(201);
  return r.body.id;
}

async function op(s: Service, id: string, name: string, body: object = {}): Promise<any> {
  const r = await s.call('POST', `/v1/sockets/${id}/${name}`, body);
  expect(r.status, JSON.stringify(r.body)).toBeLessThan(300);
  return r.body;
}

/** SIGTERM, then the exit code and how long it took. */
async function terminate(s: Service): Promise<{ code: number | null; ms: number }> {
  const start = Date.now();
  s.child.kill('SIGTERM');
  const { code } = await s.exited;
  return { code, ms: Date.now() - start };
}

describe('SIGTERM', () => {
  it('closes every socket, unlinks the Unix paths, frees the TCP ports and exits 0 (SOCKCTL_UNIX_DIR set)', async () => {
    const unixDir = mkdtempSync(join(tmpdir(), 'sc-sig-'));
    dirs.push(unixDir);
    const s = await startService({ SOCKCTL_TOKEN: 'sig-token', SOCKCTL_UNIX_DIR: unixDir });
    expect(s.token).toBe('sig-token');
    // the token given in the environment is never printed
    expect(s.stdout()).not.toContain('sig-token');

    // a Unix stream listener with a connected client, a Unix datagram socket, a seqpacket listener
    const ul = await create(s, 'unix', 'stream');
    expect((await op(s, ul, 'bind', { path: 'srv.sock' })).local).toEqual({ path: join(unixDir, 'srv.sock') });
    await op(s, ul, 'listen');
    const uc = await create(s, 'unix', 'stream');
    await op(s, uc, 'connect', { path: 'srv.sock' });
    await op(s, ul, 'accept', { timeoutMs: 1000 });
    const ud = await create(s, 'unix', 'dgram');
    await op(s, ud, 'bind', { path: 'dgram.sock' });
    const uq = await create(s, 'unix', 'seqpacket');
    await op(s, uq, 'bind', { path: 'sub/../seq.sock' });
    await op(s, uq, 'listen');
    await s.call('POST', '/v1/socketpairs', { type: 'stream' });

    // a TCP listener nobody connected to, and a TCP connection on another listener
    const tl = await create(s, 'inet', 'stream');
    // ports outside the ephemeral range: nothing else on the machine takes them once they are released
    const tcpPort = (await op(s, tl, 'bind', { address: '127.0.0.1', port: closedPort() })).local.port as number;
    await op(s, tl, 'listen');
    const tl2 = await create(s, 'inet', 'stream');
    await op(s, tl2, 'bind', { address: '127.0.0.1', port: 0 });
    const tl2Addr = (await op(s, tl2, 'listen')).local;
    const tc = await create(s, 'inet', 'stream');
    await op(s, tc, 'connect', tl2Addr);
    const udp = await create(s, 'inet', 'dgram');
    const udpPort = (await op(s, udp, 'bind', { address: '127.0.0.1', port: closedPort() })).local.port as number;

    const list = await s.call('GET', '/v1/sockets');
    expect(list.body.items.filter((x: { state: string }) => x.state !== 'closed').length).toBe(11);
    const paths = ['srv.sock', 'dgram.sock', 'seq.sock'].map((p) => join(unixDir, p));
    for (const p of paths) expect(existsSync(p)).toBe(true);
    expect(await canBind(tcpPort)).toBe(false);

    // a blocking accept in flight must not hold the shutdown: closing the socket ends its wait
    const pending = s.call('POST', `/v1/sockets/${tl}/accept`, { timeoutMs: 30_000 });
    pending.catch(() => {}); // awaited below; no unhandled rejection meanwhile
    await new Promise((r) => setTimeout(r, 200));

    const { code, ms } = await terminate(s);
    expect(code).toBe(0);
    expect(ms).toBeLessThan(5000);
    for (const p of paths) expect(existsSync(p)).toBe(false);
    // the directory was the user's: it stays, empty
    expect(existsSync(unixDir)).toBe(true);
    expect(readdirSync(unixDir)).toEqual([]);
    expect(await canBind(tcpPort)).toBe(true);
    const u = createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      u.once('error', reject);
      u.bind(udpPort, '127.0.0.1', () => resolve());
    });
    u.close();
    // the in-flight accept was answered, as a blocking accept(2) on a descriptor closed under it: EBADF
    const answered = (await pending) as { status: number; body: { code: string } };
    expect(answered).toMatchObject({ status: 409, body: { code: 'EBADF', syscall: 'accept', socket: tl } });
    await expect(fetch(`${s.base}/v1/health`)).rejects.toThrow();
  });

  it('removes the private Unix dir it made when SOCKCTL_UNIX_DIR is unset (and prints a generated token)', async () => {
    const s = await startService({ SOCKCTL_TOKEN: '', SOCKCTL_UNIX_DIR: '' });
    expect(s.stdout()).toMatch(/SOCKCTL_TOKEN=\S+/);
    const id = await create(s, 'unix', 'stream');
    const local = (await op(s, id, 'bind', { path: 'x.sock' })).local.path as string;
    const dir = dirname(local);
    dirs.push(dir);
    expect(dir.startsWith(tmpdir())).toBe(true);
    expect(existsSync(local)).toBe(true);
    await op(s, id, 'listen');
    const d = await create(s, 'unix', 'dgram');
    await op(s, d, 'bind', { path: 'y.sock' });
    const { code, ms } = await terminate(s);
    expect(code).toBe(0);
    expect(ms).toBeLessThan(5000);
    expect(existsSync(local)).toBe(false);
    expect(existsSync(dir)).toBe(false);
  });

  it('SIGINT does the same', async () => {
    const unixDir = mkdtempSync(join(tmpdir(), 'sc-sig-'));
    dirs.push(unixDir);
    const s = await startService({ SOCKCTL_TOKEN: 'sig-token', SOCKCTL_UNIX_DIR: unixDir });
    const id = await create(s, 'unix', 'stream');
    await op(s, id, 'bind', { path: 'int.sock' });
    s.child.kill('SIGINT');
    expect((await s.exited).code).toBe(0);
    expect(existsSync(join(unixDir, 'int.sock'))).toBe(false);
  });
});

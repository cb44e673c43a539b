// The policy against a real network stack that has nowhere to go (issue 5): the service runs in a network
// namespace of its own with only a loopback interface and no route, and is driven over HTTP from inside
// that namespace. With the default policy a connect to 10.1.2.3 is refused (403) before any syscall; with
// a policy that allows 10.0.0.0/8 the kernel is asked and answers ENETUNREACH (502). So a test of a
// forbidden destination cannot reach any network even if the policy were wrong. Needs root, `ip` and
// the right to make namespaces (skipped otherwise).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

const root = process.getuid?.() === 0;
const hasIp = spawnSync('ip', ['-V']).status === 0;
/** Root inside a container without CAP_SYS_ADMIN cannot make namespaces: probe without leaving one behind. */
const canUnshare = root && spawnSync('unshare', ['--net', 'true']).status === 0;

const NS = `sockctl-test-${randomBytes(4).toString('hex')}`;
const PORT = 17070;
const ADMIN = 'netns-admin-token-0123456789';
const ALICE = 'netns-alice-token-0123456789';
const BOB = 'netns-bob-token-0123456789ab';

/** Runs a command inside the namespace; returns stdout, throwing with stderr on failure. */
function inNs(cmd: string[], timeoutMs = 60_000): string {
  const r = spawnSync('ip', ['netns', 'exec', NS, ...cmd], { encoding: 'utf8', timeout: timeoutMs });
  if (r.status !== 0) throw new Error(`ip netns exec ${NS} ${cmd[0]}: status ${r.status}: ${r.stderr}`);
  return r.stdout;
}

/**
 * The HTTP client, run with python3 inside the namespace (the test process is outside it): waits for
 * health, then for each step creates a socket as the given user, connects it, reads it back and closes
 * it. No proxy (the namespace has no network to reach one).
 */
const CLIENT = String.raw`
import json, sys, time, urllib.request, urllib.error
port, steps = int(sys.argv[1]), json.loads(sys.argv[2])
base = 'http://127.0.0.1:%d' % port
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
def call(token, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
        headers={'authorization': 'Bearer ' + token, 'content-type': 'application/json'})
    try:
        with opener.open(req, timeout=20) as res:
            return res.status, json.loads(res.read() or b'null')
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b'null')
deadline = time.time() + 30
while True:
    try:
        opener.open(base + '/v1/health', timeout=2).read()
        break
    except Exception:
        if time.time() > deadline:
            raise
        time.sleep(0.1)
out = []
for s in steps:
    family = 'inet6' if ':' in s['address'] else 'inet'
    cs, created = call(s['token'], 'POST', '/v1/sockets', {'family': family, 'type': 'stream'})
    sid = created['id']
    status, body = call(s['token'], 'POST', '/v1/sockets/%s/connect' % sid, {'address': s['address'], 'port': s['port'], 'timeoutMs': 3000})
    gs, after = call(s['token'], 'GET', '/v1/sockets/%s' % sid)
    call(s['token'], 'DELETE', '/v1/sockets/%s' % sid)
    out.append({'status': status, 'body': body, 'after': after})
print(json.dumps(out))
`;

interface Outcome {
  status: number;
  body: any;
  after: any;
}

let dir = '';
let service: ChildProcess | undefined;
let serviceLog = '';

/** Starts the real entry (src/main.ts) inside the namespace with the given policy (none: the default). */
function startService(policy?: unknown): void {
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    SOCKCTL_HOST: '127.0.0.1',
    SOCKCTL_PORT: String(PORT),
    SOCKCTL_TOKEN: ADMIN,
    SOCKCTL_UNIX_DIR: dir,
    SOCKCTL_LOG_LEVEL: 'warn',
  };
  const tokens = join(dir, 'tokens.json');
  writeFileSync(
    tokens,
    JSON.stringify({
      users: [
        { name: 'alice', token: ALICE, role: 'user' },
        { name: 'bob', token: BOB, role: 'user' },
      ],
    }),
  );
  env.SOCKCTL_TOKENS_FILE = tokens;
  if (policy !== undefined) {
    env.SOCKCTL_POLICY_FILE = join(dir, 'policy.json');
    writeFileSync(env.SOCKCTL_POLICY_FILE, JSON.stringify(policy));
  } else delete env.SOCKCTL_POLICY_FILE;
  serviceLog = '';
  service = spawn('ip', ['netns', 'exec', NS, process.execPath, '--import', 'tsx', 'src/main.ts'], {
    cwd: process.cwd(),
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  service.stdout!.on('data', (d) => (serviceLog += String(d)));
  service.stderr!.on('data', (d) => (serviceLog += String(d)));
}

async function stopService(): Promise<void> {
  const s = service;
  service = undefined;
  if (!s || s.exitCode !== null || s.signalCode !== null) return;
  const exited = once(s, 'exit');
  s.kill('SIGTERM');
  const timer = setTimeout(() => s.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

function drive(steps: { token: string; address: string; port: number }[]): Outcome[] {
  try {
    return JSON.parse(inNs(['python3', '-c', CLIENT, String(PORT), JSON.stringify(steps)]));
  } catch (e) {
    throw new Error(`${(e as Error).message}\nservice log:\n${serviceLog}`);
  }
}

describe.skipIf(!root || !hasIp || !canUnshare)('in a network namespace with only loopback', () => {
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'sc-ns-'));
    const add = spawnSync('ip', ['netns', 'add', NS], { encoding: 'utf8' });
    if (add.status !== 0) throw new Error(`ip netns add: ${add.stderr}`);
    const up = spawnSync('ip', ['-n', NS, 'link', 'set', 'lo', 'up'], { encoding: 'utf8' });
    if (up.status !== 0) throw new Error(`ip link set lo up: ${up.stderr}`);
  });
  afterEach(async () => {
    await stopService();
  });
  afterAll(async () => {
    await stopService();
    spawnSync('ip', ['netns', 'del', NS]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('the namespace has only lo, and no route off it', () => {
    const links = inNs(['ip', '-o', 'link', 'show'])
      .trim()
      .split('\n')
      .map((l) => l.split(':')[1]!.trim());
    expect(links).toEqual(['lo']);
    expect(inNs(['ip', '-4', 'route', 'show']).trim()).toBe('');
    expect(inNs(['ip', '-6', 'route', 'show']).trim()).not.toMatch(/default/);
  });

  it('default policy: connect to 10.1.2.3 (and any other non-loopback address) is 403, never attempted', () => {
    startService();
    const [alice, admin, v6] = drive([
      { token: ALICE, address: '10.1.2.3', port: 5000 },
      { token: ADMIN, address: '10.1.2.3', port: 5000 },
      { token: ALICE, address: '::ffff:10.1.2.3', port: 5000 },
    ]);
    for (const o of [alice!, admin!, v6!]) {
      expect(o.status, JSON.stringify(o.body)).toBe(403);
      expect(o.body).toMatchObject({ code: 'SOCKCTL_FORBIDDEN', message: expect.stringMatching(/^connect denied by policy rule builtin\.connect\.allow: 10\.1\.2\.3 is not in/) });
      // never attempted: no error from the kernel, no implicit bind, TCP never left CLOSE
      expect(o.after).toMatchObject({ state: 'created', local: null, lastError: null });
      expect(o.after.kernel.tcpState).toBe('CLOSE');
    }
  });

  it('a policy that allows 10.0.0.0/8: the kernel is asked, and in here it answers ENETUNREACH (502)', () => {
    startService({ users: { alice: { connect: { allow: ['127.0.0.0/8', '10.0.0.0/8'], ports: ['1024-65535'] } } } });
    const [alice, bob, elsewhere, mapped] = drive([
      { token: ALICE, address: '10.1.2.3', port: 5000 },
      { token: BOB, address: '10.1.2.3', port: 5000 },
      { token: ALICE, address: '192.168.1.1', port: 5000 },
      { token: ALICE, address: '::ffff:10.1.2.3', port: 5000 },
    ]);
    // alice's connect reached the kernel, which has no route to 10/8 in this namespace
    expect(alice!.status, JSON.stringify(alice!.body)).toBe(502);
    expect(alice!.body).toMatchObject({ code: 'ENETUNREACH', errno: 101, syscall: 'connect' });
    expect(alice!.after.state).toBe('created');
    expect(alice!.after.lastError).toMatchObject({ code: 'ENETUNREACH' });
    // IPv4-mapped on an inet6 socket: the same destination, the same answer (IPv6 has no route either)
    expect(mapped!.status, JSON.stringify(mapped!.body)).toBe(502);
    expect(mapped!.body.code).toBe('ENETUNREACH');
    // bob has no such rule; alice's rule covers 10/8 only
    expect(bob!.status).toBe(403);
    expect(bob!.body.message).toMatch(/builtin\.connect\.allow/);
    expect(elsewhere!.status).toBe(403);
    expect(elsewhere!.body.message).toMatch(/users\.alice\.connect\.allow: 192\.168\.1\.1 is not in 127\.0\.0\.0\/8, 10\.0\.0\.0\/8/);
    expect(elsewhere!.after.lastError).toBeNull();
  });
});

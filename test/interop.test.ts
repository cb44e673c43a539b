// Interop with peers that are not Node (python3, socat) over loopback TCP, and the TCP fidelity rules of
// DESIGN.md section 3: for each rule, a python3 program makes the same calls with the socket module and
// the service must answer what the kernel answered there (and what the rule says, written down here).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startApp, until, WILDCARD_BIND_POLICY, type TestApp } from './helpers.js';

type Addr = { address: string; port: number };
const hasSocat = spawnSync('which', ['socat']).status === 0;

let t: TestApp;
const procs = new Set<ChildProcess>();
beforeEach(async () => {
  t = await startApp();
});
afterEach(async () => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  procs.clear();
  await t.close();
});

/** A child process with its output collected; `exited` resolves with its exit code. */
function peer(cmd: string, args: string[]) {
  const proc = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  procs.add(proc);
  const out = { stdout: '', stderr: '' };
  proc.stdout.on('data', (d) => (out.stdout += d));
  proc.stderr.on('data', (d) => (out.stderr += d));
  const exited = new Promise<number | null>((resolve) => proc.on('close', (code) => resolve(code)));
  return { proc, out, exited };
}

async function create(options?: object): Promise<string> {
  const r = await t.call('POST', '/v1/sockets', { family: 'inet', type: 'stream', ...(options ? { options } : {}) });
  expect(r.status).toBe(201);
  return r.body.id;
}
const get = async (id: string) => (await t.call('GET', `/v1/sockets/${id}`)).body;
const post = (id: string, op: string, body: object = {}) => t.call('POST', `/v1/sockets/${id}/${op}`, body);
const del = (id: string, query = '') => t.call('DELETE', `/v1/sockets/${id}${query}`);

async function listening(options?: object, backlog = 4): Promise<{ id: string; local: Addr }> {
  const id = await create(options);
  expect((await post(id, 'bind', { address: '127.0.0.1', port: 0 })).status).toBe(200);
  const l = await post(id, 'listen', { backlog });
  expect(l.status).toBe(200);
  return { id, local: l.body.local };
}

async function pair(options?: object): Promise<{ l: { id: string; local: Addr }; c: string; a: string }> {
  const l = await listening(options);
  const c = await create();
  expect((await post(c, 'connect', l.local)).status).toBe(200);
  const a = await post(l.id, 'accept', { timeoutMs: 1000 });
  expect(a.status).toBe(201);
  return { l, c, a: a.body.id };
}

/** Reads a stream until EOF (bounded), returning all bytes. */
async function recvToEof(id: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let i = 0; i < 1000; i++) {
    const r = await post(id, 'recv', { maxBytes: 1 << 20, encoding: 'base64', timeoutMs: 5000 });
    expect(r.status).toBe(200);
    if (r.body.eof) return Buffer.concat(parts);
    parts.push(Buffer.from(r.body.data, 'base64'));
  }
  throw new Error('no EOF after 1000 reads');
}

const upperAscii = (b: Buffer) => Buffer.from(b.map((x) => (x >= 0x61 && x <= 0x7a ? x - 0x20 : x)));

const PY_UPPER_SERVER = `
import socket
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept(); data = b''
while True:
    d = c.recv(65536)
    if not d: break
    data += d
c.sendall(data.upper()); c.close(); s.close()
`;

const PY_CLIENT = `
import json, socket, sys
c = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
c.sendall(b'ping from python'); c.shutdown(socket.SHUT_WR)
data = b''
while True:
    d = c.recv(65536)
    if not d: break
    data += d
print(json.dumps({'local': c.getsockname()[1], 'reply': data.decode()}))
`;

describe('non-Node peers', () => {
  // sockctl as the client of a python3 server: 256 KiB of binary data there and back, EOF both ways.
  it('a python3 server echoes upper case to a sockctl client', async () => {
    const py = peer('python3', ['-c', PY_UPPER_SERVER]);
    const port = Number(await until(() => /^(\d+)\n/.exec(py.out.stdout)?.[1], 'the python server port'));
    const c = await create();
    const conn = await post(c, 'connect', { address: '127.0.0.1', port });
    expect(conn.body).toMatchObject({ state: 'connected', remote: { address: '127.0.0.1', port } });
    const payload = Buffer.concat([Buffer.from('hello from sockctl '), randomBytes(256 * 1024)]);
    expect((await post(c, 'send', { data: payload.toString('base64'), encoding: 'base64' })).body).toEqual({ bytes: payload.length });
    expect((await post(c, 'shutdown', { how: 'SHUT_WR' })).status).toBe(200);
    const reply = await recvToEof(c);
    expect(reply.subarray(0, 19).toString()).toBe('HELLO FROM SOCKCTL ');
    expect(reply.equals(upperAscii(payload))).toBe(true);
    expect(await py.exited).toBe(0);
  });

  // sockctl as the server of a python3 client: accept sees the client's own port as remote.
  it('a python3 client talks to a sockctl listener', async () => {
    const l = await listening();
    const py = peer('python3', ['-c', PY_CLIENT, String(l.local.port)]);
    const acc = await post(l.id, 'accept', { timeoutMs: 5000 });
    expect(acc.status).toBe(201);
    const a = acc.body.id;
    expect((await recvToEof(a)).toString()).toBe('ping from python');
    expect((await post(a, 'send', { data: 'pong from sockctl' })).body).toEqual({ bytes: 17 });
    expect((await del(a)).status).toBe(200);
    expect(await py.exited).toBe(0);
    const seen = JSON.parse(py.out.stdout);
    expect(seen).toEqual({ local: acc.body.remote.port, reply: 'pong from sockctl' });
    expect(acc.body.remote.address).toBe('127.0.0.1');
  });

  it.skipIf(!hasSocat)('a socat server (EXEC tr a-z A-Z) serves a sockctl client', async () => {
    const so = peer('socat', ['-d', '-d', 'TCP-LISTEN:0,bind=127.0.0.1', 'EXEC:tr a-z A-Z']);
    const port = Number(await until(() => /listening on .*127\.0\.0\.1:(\d+)/.exec(so.out.stderr)?.[1], 'the socat port'));
    const c = await create();
    expect((await post(c, 'connect', { address: '127.0.0.1', port })).status).toBe(200);
    expect((await post(c, 'send', { data: 'hello socat\n' })).body).toEqual({ bytes: 12 });
    expect((await post(c, 'shutdown', { how: 'SHUT_WR' })).status).toBe(200);
    expect((await recvToEof(c)).toString()).toBe('HELLO SOCAT\n');
    expect(await so.exited).toBe(0);
  });

  it.skipIf(!hasSocat)('a socat client talks to a sockctl listener', async () => {
    const l = await listening();
    const so = peer('socat', ['-t', '5', '-', `TCP:127.0.0.1:${l.local.port}`]);
    so.proc.stdin!.end('ping from socat');
    const acc = await post(l.id, 'accept', { timeoutMs: 5000 });
    expect(acc.status).toBe(201);
    expect((await recvToEof(acc.body.id)).toString()).toBe('ping from socat');
    expect((await post(acc.body.id, 'send', { data: 'pong' })).body).toEqual({ bytes: 4 });
    expect((await del(acc.body.id)).status).toBe(200);
    expect(await so.exited).toBe(0);
    expect(so.out.stdout).toBe('pong');
  });
});

/** The same calls made by python3's socket module, one scenario per run, answered as JSON. */
const PY_FIDELITY = String.raw`
import errno, json, select, socket, struct, sys, time
def err(f):
    try:
        r = f()
        return 'eof' if r == b'' else ('ok' if r is None else r)
    except OSError as e:
        return errno.errorcode[e.errno]
def tcp(reuse=False):
    s = socket.socket()
    if reuse: s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return s
def name(s):
    a, p = s.getsockname()
    return None if p == 0 else {'address': a, 'port': p}
def pair(reuse=False):
    L = tcp(reuse); L.bind(('127.0.0.1', 0)); L.listen(4)
    C = socket.create_connection(L.getsockname()); A, _ = L.accept()
    return L, C, A
def in_time_wait(port):
    end = time.time() + 5
    while time.time() < end:
        for line in open('/proc/net/tcp').read().splitlines()[1:]:
            cols = line.split()
            if cols[1].endswith(':%04X' % port) and cols[3] == '06': return True
        select.select([], [], [], 0.01)
    return False
def timewait():
    out = {}
    for old in (False, True):
        for new in (False, True):
            L, C, A = pair(old); port = L.getsockname()[1]
            A.close(); C.recv(1); C.close(); L.close()  # A, the active closer, ends in TIME_WAIT
            assert in_time_wait(port)
            N = tcp(new); out['%s/%s' % (old, new)] = err(lambda: N.bind(('127.0.0.1', port))); N.close()
    return out
def reuse_listen():
    a, b = tcp(True), tcp(True)
    r = [err(lambda: a.bind(('127.0.0.1', 0)))]; port = a.getsockname()[1]
    return r + [err(lambda: b.bind(('127.0.0.1', port))), err(lambda: a.listen(4)), err(lambda: b.listen(4))]
def shut_rd():
    L, C, A = pair(); C.sendall(b'queued'); select.select([A], [], [], 5)
    A.shutdown(socket.SHUT_RD)
    return [A.recv(100).decode(), err(lambda: A.recv(100))]
def local_names():
    s = tcp(); r = {'fresh': name(s)}; s.listen(1); r['afterListen'] = name(s)
    c = tcp(); c.connect(('127.0.0.1', s.getsockname()[1])); r['afterConnect'] = name(c)
    return r
def reset():
    L, C, A = pair(); before = C.getpeername() == L.getsockname()
    A.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0)); A.close()
    return {'remoteBefore': before, 'remoteAfter': err(C.getpeername), 'recv': [err(lambda: C.recv(10)), err(lambda: C.recv(10))]}
def listen1():
    L = tcp(); L.bind(('127.0.0.1', 0)); L.listen(1); L.setblocking(False)
    cs = [tcp() for _ in range(4)]
    for c in cs: c.setblocking(False); c.connect_ex(L.getsockname())
    end = time.time() + 5
    while time.time() < end and len(select.select([], cs[:2], [], 0.05)[1]) < 2: pass
    states = [c.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)[0] for c in cs]
    accepted = 0
    while err(lambda: L.accept()) != 'EAGAIN': accepted += 1
    return {'tcpStates': [{1: 'ESTABLISHED', 2: 'SYN_SENT'}.get(s, s) for s in states], 'accepted': accepted}
print(json.dumps(globals()[sys.argv[1]]()))
`;

function kernel(scenario: string): unknown {
  const r = spawnSync('python3', ['-c', PY_FIDELITY, scenario], { encoding: 'utf8', timeout: 20_000 });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  return JSON.parse(r.stdout);
}

/** "ok" for a 2xx, else the errno name (checking the failing syscall). */
function outcome(r: { status: number; body: any }, syscall: string): string {
  if (r.status < 300) return 'ok';
  expect(r.body.syscall).toBe(syscall);
  return r.body.code;
}

const ephemeral = (a: Addr | null) => a && { address: a.address, port: a.port > 0 ? 'ephemeral' : a.port };

describe('TCP fidelity rules, compared with python3 on the same kernel', () => {
  // The active closer's port stays in TIME_WAIT; a rebind needs SO_REUSEADDR on both the old and the new socket.
  it('TIME_WAIT blocks a rebind unless both the old and the new socket set SO_REUSEADDR', async () => {
    const service: Record<string, string> = {};
    for (const old of [false, true]) {
      for (const neu of [false, true]) {
        const { l, c, a } = await pair({ SO_REUSEADDR: old });
        expect((await del(a)).status).toBe(200);
        expect((await post(c, 'recv', {})).body.eof).toBe(true);
        expect((await del(c)).status).toBe(200);
        expect((await del(l.id)).status).toBe(200);
        await until(async () => (await get(a)).kernel.tcpState === 'TIME_WAIT', 'the closed socket in TIME_WAIT');
        const n = await create({ SO_REUSEADDR: neu });
        service[`${old ? 'True' : 'False'}/${neu ? 'True' : 'False'}`] = outcome(await post(n, 'bind', l.local), 'bind');
        expect((await del(n)).status).toBe(200);
      }
    }
    const expected = { 'False/False': 'EADDRINUSE', 'False/True': 'EADDRINUSE', 'True/False': 'EADDRINUSE', 'True/True': 'ok' };
    expect(kernel('timewait')).toEqual(expected);
    expect(service).toEqual(expected);
  });

  // Both binds succeed; the clash surfaces at the second listen, with syscall "listen".
  it('two SO_REUSEADDR sockets bind one port and clash only at the second listen', async () => {
    const a = await create({ SO_REUSEADDR: true });
    const b = await create({ SO_REUSEADDR: true });
    const bound = await post(a, 'bind', { address: '127.0.0.1', port: 0 });
    const service = [outcome(bound, 'bind'), outcome(await post(b, 'bind', bound.body.local), 'bind')];
    service.push(outcome(await post(a, 'listen', { backlog: 4 }), 'listen'), outcome(await post(b, 'listen', { backlog: 4 }), 'listen'));
    expect(kernel('reuse_listen')).toEqual(['ok', 'ok', 'ok', 'EADDRINUSE']);
    expect(service).toEqual(['ok', 'ok', 'ok', 'EADDRINUSE']);
    expect((await get(b)).state).toBe('bound');
  });

  it('after SHUT_RD, queued data is still returned, then EOF', async () => {
    const { c, a } = await pair();
    expect((await post(c, 'send', { data: 'queued' })).body).toEqual({ bytes: 6 });
    await until(async () => (await get(a)).kernel.recvQueue === 6, 'the data queued at the receiver');
    expect((await post(a, 'shutdown', { how: 'SHUT_RD' })).body.shutdown).toEqual({ read: true, write: false });
    const first = (await post(a, 'recv', { timeoutMs: 0 })).body;
    const second = (await post(a, 'recv', { timeoutMs: 0 })).body;
    expect(first).toEqual({ data: 'queued', encoding: 'utf8', bytes: 6, eof: false });
    expect(second).toEqual({ data: '', encoding: 'utf8', bytes: 0, eof: true });
    expect(kernel('shut_rd')).toEqual([first.data, 'eof']);
  });

  // local is getsockname(): null until bound, then what the implicit bind of listen or connect chose.
  // (listen on an unbound socket binds the wildcard address: the default policy refuses that, so this
  // test runs with a policy that allows it, and checks the refusal too)
  it('local is null before bind and filled after an implicit bind by listen or connect', async () => {
    const refused = await create();
    const denied = await post(refused, 'listen', { backlog: 1 });
    expect(denied.status).toBe(403);
    expect(denied.body.message).toMatch(/bind denied by policy rule .*0\.0\.0\.0/);
    await t.close();
    t = await startApp({}, { policy: WILDCARD_BIND_POLICY });
    const s = await create();
    const fresh = (await get(s)).local;
    const listened = await post(s, 'listen', { backlog: 1 });
    const c = await create();
    const connected = await post(c, 'connect', { address: '127.0.0.1', port: listened.body.local.port });
    const service = { fresh, afterListen: listened.body.local, afterConnect: connected.body.local };
    const py = kernel('local_names') as Record<string, Addr | null>;
    const expected = { fresh: null, afterListen: { address: '0.0.0.0', port: 'ephemeral' }, afterConnect: { address: '127.0.0.1', port: 'ephemeral' } };
    expect({ fresh: py.fresh, afterListen: ephemeral(py.afterListen!), afterConnect: ephemeral(py.afterConnect!) }).toEqual(expected);
    expect({ fresh, afterListen: ephemeral(service.afterListen), afterConnect: ephemeral(service.afterConnect) }).toEqual(expected);
    expect((await post(s, 'accept', { timeoutMs: 0 })).body.remote).toEqual(service.afterConnect);
  });

  // getpeername() fails after a reset, so remote is null; recv gives one ECONNRESET, then EOF.
  it('remote is null after the peer reset, and recv gives ECONNRESET then EOF', async () => {
    const { l, c, a } = await pair();
    const remoteBefore = (await get(c)).remote;
    expect((await del(a, '?reset=true')).status).toBe(200);
    await until(async () => (await get(c)).kernel.tcpState === 'CLOSE', 'the RST to arrive');
    const remoteAfter = (await get(c)).remote;
    const recv = [outcome(await post(c, 'recv', { timeoutMs: 0 }), 'recvmsg')];
    const again = await post(c, 'recv', { timeoutMs: 0 });
    recv.push(again.body.eof ? 'eof' : 'data');
    const py = kernel('reset') as { remoteBefore: boolean; remoteAfter: string; recv: string[] };
    expect(py).toEqual({ remoteBefore: true, remoteAfter: 'ENOTCONN', recv: ['ECONNRESET', 'eof'] });
    expect({ remoteBefore: remoteBefore.port === l.local.port, remoteAfter, recv }).toEqual({ remoteBefore: true, remoteAfter: null, recv: py.recv });
  });

  // backlog+1 connections complete the handshake; the rest stay in SYN_SENT, unaccepted.
  it('listen(1) queues two connections', async () => {
    const l = await listening(undefined, 1);
    const clients: string[] = [];
    for (let i = 0; i < 4; i++) {
      const c = await create();
      expect([200, 202]).toContain((await post(c, 'connect', { ...l.local, timeoutMs: 0 })).status);
      clients.push(c);
    }
    await until(async () => (await get(l.id)).pending === 2, 'two queued connections');
    const tcpStates = [];
    for (const c of clients) tcpStates.push((await get(c)).kernel.tcpState);
    let accepted = 0;
    while ((await post(l.id, 'accept', { timeoutMs: 0 })).status === 201) accepted++;
    const expected = { tcpStates: ['ESTABLISHED', 'ESTABLISHED', 'SYN_SENT', 'SYN_SENT'], accepted: 2 };
    expect(kernel('listen1')).toEqual(expected);
    expect({ tcpStates, accepted }).toEqual(expected);
  });
});

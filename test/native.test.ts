// Tests of the syscall addon (native/sockctl.c) on real sockets: 127.0.0.1, ::1 and Unix paths.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createRequire } from 'node:module';
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, unlinkSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Native, Poller, SockAddr } from '../native/index.js';
import { closedPort } from './ports.js';

const N = createRequire(import.meta.url)('../build/Release/sockctl.node') as Native;
const C = N.constants;
const R = C.POLL_READABLE;
const W = C.POLL_WRITABLE;

type Inet = { family: number; address: string; port: number; flowinfo?: number; scopeId?: number };
type SysError = Error & { code: string; errno: number; syscall: string };

// Everything a test opens is registered here and closed by afterEach, even when the test fails.
const fds = new Set<number>();
const pollers = new Set<Poller>();
let dir = '';

function track(fd: number): number {
  fds.add(fd);
  return fd;
}
function sock(domain: number, type: number, protocol = 0): number {
  return track(N.socket(domain, type, protocol));
}
function pair(domain: number, type: number): [number, number] {
  const [a, b] = N.socketpair(domain, type, 0);
  return [track(a), track(b)];
}
function closeFd(fd: number): void {
  fds.delete(fd);
  N.close(fd);
}
function v4(port = 0, address = '127.0.0.1'): Inet {
  return { family: C.AF_INET, address, port };
}
function v6(port = 0, address = '::1'): Inet {
  return { family: C.AF_INET6, address, port };
}
function unix(path: string | null): SockAddr {
  return { family: C.AF_UNIX, path };
}
function inetName(fd: number): Inet {
  return N.getsockname(fd) as Inet;
}
function caught(fn: () => unknown): SysError {
  try {
    fn();
  } catch (e) {
    return e as SysError;
  }
  throw new Error('expected an exception');
}
function expectSysError(fn: () => unknown, code: string, syscall: string): SysError {
  const e = caught(fn);
  expect(e).toBeInstanceOf(Error);
  expect({ code: e.code, errno: e.errno, syscall: e.syscall }).toEqual({ code, errno: (C as Record<string, number>)[code], syscall });
  return e;
}
function text(b: Uint8Array): string {
  return Buffer.from(b).toString();
}
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** One readiness wait through a fresh Poller, closed afterwards. */
function waitFor(fd: number, events: number, ms = 2000): Promise<{ status: number; events: number }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      p.close();
      pollers.delete(p);
      reject(new Error(`fd ${fd} not ready for ${events} after ${ms} ms`));
    }, ms);
    const p = N.createPoller(fd, (status, ready) => {
      clearTimeout(timer);
      p.close();
      pollers.delete(p);
      resolve({ status, events: ready });
    });
    pollers.add(p);
    p.start(events);
  });
}

/** Non-blocking connect: the first connect, a wait for writability, then connect again. */
async function connectWait(fd: number, to: SockAddr): Promise<void> {
  try {
    N.connect(fd, to);
    return;
  } catch (e) {
    expect((e as SysError).code).toBe('EINPROGRESS');
  }
  const r = await waitFor(fd, W);
  expect(r.events & W).toBe(W);
  try {
    N.connect(fd, to);
  } catch (e) {
    expect((e as SysError).code).toBe('EISCONN');
  }
}

/** A listening TCP socket and an accepted connection to it. */
async function tcpPair(family = C.AF_INET): Promise<{ srv: number; cli: number; acc: number; remote: SockAddr | null }> {
  const srv = sock(family, C.SOCK_STREAM);
  N.bind(srv, family === C.AF_INET ? v4() : v6());
  N.listen(srv, 8);
  const cli = sock(family, C.SOCK_STREAM);
  await connectWait(cli, N.getsockname(srv));
  await waitFor(srv, R);
  const { fd, remote } = N.accept(srv);
  return { srv, cli, acc: track(fd), remote };
}

/** O_NONBLOCK and O_CLOEXEC as the kernel reports them for this fd. */
function fdFlags(fd: number): { nonblock: boolean; cloexec: boolean } {
  const m = /flags:\s*([0-7]+)/.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
  const flags = parseInt(m?.[1] ?? '', 8);
  return { nonblock: (flags & 0o4000) !== 0, cloexec: (flags & 0o2000000) !== 0 };
}


beforeAll(() => {
  dir = mkdtempSync('/tmp/sctl-'); // short: sun_path holds 107 bytes
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});
afterEach(() => {
  for (const p of pollers) p.close();
  pollers.clear();
  for (const fd of fds) {
    try {
      N.close(fd);
    } catch {
      /* already closed by the test */
    }
  }
  fds.clear();
});

describe('module', () => {
  it('exports every function of the contract and the constants', () => {
    for (const name of [
      'socket', 'socketpair', 'bind', 'listen', 'accept', 'connect', 'send', 'sendv', 'recv', 'recvInto', 'shutdown',
      'close', 'getsockname', 'getpeername', 'getsockoptInt', 'setsockoptInt', 'getsockoptLinger',
      'setsockoptLinger', 'getsockoptTimeval', 'setsockoptTimeval', 'tcpInfo', 'ioctlInt', 'fdCount',
      'unixQueue', 'tcpDiagState', 'createPoller', 'readerPoolBytes', 'detachPool', 'keepFreedHeap',
    ]) {
      expect(typeof (N as unknown as Record<string, unknown>)[name], name).toBe('function');
    }
    expect(C).toMatchObject({
      AF_UNSPEC: 0, AF_UNIX: 1, AF_INET: 2, AF_INET6: 10, SOCK_STREAM: 1, SOCK_DGRAM: 2, SOCK_SEQPACKET: 5,
      SOL_SOCKET: 1, SO_REUSEADDR: 2, IPPROTO_TCP: 6, TCP_NODELAY: 1, TCP_INFO: 11, MSG_PEEK: 2,
      MSG_TRUNC: 0x20, MSG_NOSIGNAL: 0x4000, SHUT_WR: 1, SIOCINQ: 0x541b, FIONREAD: 0x541b, SIOCOUTQ: 0x5411,
      POLL_READABLE: 1, POLL_WRITABLE: 2, EAGAIN: 11, EWOULDBLOCK: 11, EINPROGRESS: 115, ECONNREFUSED: 111,
      EADDRINUSE: 98, ENAMETOOLONG: 36, EINTR: 4,
    });
    for (const v of Object.values(C)) expect(Number.isInteger(v)).toBe(true);
  });

  it('has exactly the constants that index.d.ts names in ConstantName', () => {
    const dts = readFileSync(new URL('../native/index.d.ts', import.meta.url), 'utf8');
    const union = /export type ConstantName =([^;]*);/.exec(dts)?.[1] ?? '';
    const names = [...union.matchAll(/'([A-Z0-9_]+)'/g)].map((m) => m[1] ?? '').sort();
    expect(names.length).toBeGreaterThan(50);
    expect(Object.keys(C).sort()).toEqual(names);
  });

  it('rejects wrong argument types with ERR_INVALID_ARG_TYPE', () => {
    const bad = [
      () => N.socket('2' as unknown as number, 1, 0),
      () => N.bind(0, null as unknown as SockAddr),
      () => N.send(0, 'text' as unknown as Uint8Array, 0),
      () => N.sendv(0, 'x' as unknown as Uint8Array[], 0),
      () => N.recvInto(0, 'x' as unknown as Uint8Array, 1, 0),
      () => N.createPoller(0, null as unknown as () => void),
      () => N.setsockoptLinger(0, { onoff: 1, linger: 0 } as unknown as { onoff: boolean; linger: number }),
    ];
    for (const fn of bad) {
      const e = caught(fn);
      expect(e).toBeInstanceOf(TypeError);
      expect(e.code).toBe('ERR_INVALID_ARG_TYPE');
    }
    expect(caught(() => N.bind(0, { family: C.AF_INET, address: '127.0.0.1', port: 70000 })).code).toBe(
      'ERR_OUT_OF_RANGE',
    );
  });

  // the service's malloc settings (main.ts): accepted within glibc's bounds, anything else refused by name
  it('keepFreedHeap takes the service settings and refuses an mmap threshold over 32 MiB', () => {
    expect(() => N.keepFreedHeap(64 * 1024 * 1024, 32 * 1024 * 1024)).not.toThrow();
    expect(caught(() => N.keepFreedHeap(0, 32 * 1024 * 1024 + 1)).code).toBe('ERR_OUT_OF_RANGE');
    expect(caught(() => N.keepFreedHeap(-1, 0)).code).toBe('ERR_OUT_OF_RANGE');
  });
});

describe('TCP on 127.0.0.1', () => {
  it('binds, listens, connects, accepts, sends, peeks, shuts down', async () => {
    const srv = sock(C.AF_INET, C.SOCK_STREAM);
    expect(fdFlags(srv)).toEqual({ nonblock: true, cloexec: true });
    N.bind(srv, v4(0));
    const name = inetName(srv);
    expect(name.family).toBe(C.AF_INET);
    expect(name.address).toBe('127.0.0.1');
    expect(name.port).toBeGreaterThan(0);
    N.listen(srv, 1);
    expect(N.getsockoptInt(srv, C.SOL_SOCKET, C.SO_ACCEPTCONN)).toBe(1);

    const cli = sock(C.AF_INET, C.SOCK_STREAM);
    await connectWait(cli, name);
    expect(N.getsockoptInt(cli, C.SOL_SOCKET, C.SO_ERROR)).toBe(0);
    expect(N.getpeername(cli)).toEqual(name);

    await waitFor(srv, R);
    const { fd, remote } = N.accept(srv);
    const acc = track(fd);
    expect(fdFlags(acc)).toEqual({ nonblock: true, cloexec: true });
    expect(remote).toEqual(N.getsockname(cli));
    expect(N.getpeername(acc)).toEqual(N.getsockname(cli));

    expect(N.send(cli, Buffer.from('ping'), 0)).toBe(4);
    await waitFor(acc, R);
    expect(N.ioctlInt(acc, C.SIOCINQ)).toBe(4);
    const peek = N.recv(acc, 100, C.MSG_PEEK);
    expect(text(peek.data)).toBe('ping');
    expect(peek.length).toBe(4);
    expect(peek.from).toBeNull();
    const got = N.recv(acc, 100, 0);
    expect(got).toMatchObject({ length: 4, truncated: false, from: null });
    expect(got.data).toBeInstanceOf(Buffer);
    expect(text(got.data)).toBe('ping');
    expect(caught(() => N.recv(acc, 100, 0)).code).toBe('EAGAIN');

    expect(N.sendv(acc, [Buffer.from('po'), new Uint8Array(0), new TextEncoder().encode('ng!')], 0)).toBe(5);
    await waitFor(cli, R);
    const part = N.recv(cli, 3, 0);
    expect([text(part.data), part.length]).toEqual(['pon', 3]);
    expect(text(N.recv(cli, 3, 0).data)).toBe('g!');

    N.shutdown(cli, C.SHUT_WR);
    await waitFor(acc, R);
    const eof = N.recv(acc, 100, 0);
    expect(eof.length).toBe(0);
    expect(eof.data.length).toBe(0);
    N.send(acc, Buffer.from('after'), 0); // the other direction still works
    await waitFor(cli, R);
    expect(text(N.recv(cli, 100, 0).data)).toBe('after');

    closeFd(acc);
    closeFd(cli);
    closeFd(srv);
  });

  it('recv with maxBytes 0 and reads larger than the stack buffer', async () => {
    const { cli, acc } = await tcpPair();
    N.setsockoptInt(cli, C.SOL_SOCKET, C.SO_SNDBUF, 1 << 20);
    const big = Buffer.alloc(200_000);
    for (let i = 0; i < big.length; i++) big[i] = i % 251;
    const sender = (async () => {
      let sent = 0;
      while (sent < big.length) {
        try {
          sent += N.send(cli, big.subarray(sent), 0);
        } catch (e) {
          expect((e as SysError).code).toBe('EAGAIN');
          await waitFor(cli, W);
        }
      }
    })();
    const chunks: Buffer[] = [];
    let total = 0;
    while (total < big.length) {
      await waitFor(acc, R);
      expect(N.recv(acc, 0, 0).length).toBe(0); // reads nothing, consumes nothing
      const r = N.recv(acc, 150_000, 0);
      chunks.push(r.data);
      total += r.data.length;
      expect(r.data.length).toBe(r.length);
    }
    await sender;
    expect(Buffer.concat(chunks).equals(big)).toBe(true);
  });

  it('recvInto reads into the caller\'s buffer, up to maxBytes, with EAGAIN, peek and EOF', async () => {
    const { cli, acc } = await tcpPair();
    const into = Buffer.alloc(8, 0x2e);
    expect(caught(() => N.recvInto(acc, into, 9, 0)).code).toBe('ERR_OUT_OF_RANGE'); // more than fits
    expectSysError(() => N.recvInto(acc, into, 8, 0), 'EAGAIN', 'recvmsg');
    N.send(cli, Buffer.from('abcdefghij'), 0);
    await waitFor(acc, R);
    expect(N.recvInto(acc, into, 4, C.MSG_PEEK)).toBe(4);
    expect(text(into)).toBe('abcd....');
    expect(N.recvInto(acc, into, 0, 0)).toBe(0); // reads nothing, consumes nothing
    expect(N.recvInto(acc, into, 6, 0)).toBe(6);
    expect(text(into)).toBe('abcdef..');
    expect(N.recvInto(acc, into.subarray(2), 6, 0)).toBe(4); // what is left: ghij, at the view's start
    expect(text(into)).toBe('abghij..');
    N.shutdown(cli, C.SHUT_WR);
    await waitFor(acc, R);
    expect(N.recvInto(acc, into, 8, 0)).toBe(0); // EOF
  });
});

describe('errors carry code, errno and syscall', () => {
  it('EADDRINUSE from bind on a held port', () => {
    const a = sock(C.AF_INET, C.SOCK_STREAM);
    N.bind(a, v4());
    N.listen(a, 1);
    const b = sock(C.AF_INET, C.SOCK_STREAM);
    const e = expectSysError(() => N.bind(b, inetName(a)), 'EADDRINUSE', 'bind');
    expect(e.message).toBe('bind: Address already in use');
  });

  it('ECONNREFUSED from the second connect after the poll', async () => {
    const to = v4(closedPort());
    const s = sock(C.AF_INET, C.SOCK_STREAM);
    let first: SysError | undefined;
    try {
      N.connect(s, to);
    } catch (e) {
      first = e as SysError;
    }
    expect(['EINPROGRESS', 'ECONNREFUSED']).toContain(first?.code);
    if (first?.code === 'EINPROGRESS') {
      const r = await waitFor(s, W);
      // libuv reports the socket error as a negative status; both events are then set
      if (r.status < 0) expect(r.events).toBe(R | W);
      else expect(r.events & W).toBe(W);
      const e = expectSysError(() => N.connect(s, to), 'ECONNREFUSED', 'connect');
      expect(e.message).toBe('connect: Connection refused');
    }
  });

  it('ENOTCONN, EOPNOTSUPP, EAGAIN, EBADF, EINVAL, EAFNOSUPPORT', () => {
    const t = sock(C.AF_INET, C.SOCK_STREAM);
    expectSysError(() => N.recv(t, 10, 0), 'ENOTCONN', 'recvmsg');
    expectSysError(() => N.getpeername(t), 'ENOTCONN', 'getpeername');
    expectSysError(() => N.send(t, Buffer.from('x'), 0), 'EPIPE', 'send'); // MSG_NOSIGNAL: no SIGPIPE
    const u = sock(C.AF_INET, C.SOCK_DGRAM);
    expectSysError(() => N.listen(u, 1), 'EOPNOTSUPP', 'listen');
    N.bind(t, v4());
    N.listen(t, 1);
    expectSysError(() => N.accept(t), 'EAGAIN', 'accept4');

    const dead = N.socket(C.AF_INET, C.SOCK_STREAM, 0);
    N.close(dead);
    expectSysError(() => N.bind(dead, v4()), 'EBADF', 'bind');
    expectSysError(() => N.getsockname(dead), 'EBADF', 'getsockname');
    expectSysError(() => N.recv(dead, 1, 0), 'EBADF', 'recvmsg');
    expectSysError(() => N.sendv(dead, [Buffer.from('x')], 0), 'EBADF', 'sendmsg');
    expectSysError(() => N.getsockoptInt(dead, C.SOL_SOCKET, C.SO_TYPE), 'EBADF', 'getsockopt');
    expectSysError(() => N.close(dead), 'EBADF', 'close');
    expectSysError(() => N.createPoller(dead, () => {}), 'EBADF', 'uv_poll_init');

    const e = expectSysError(() => N.bind(u, v4(0, 'not-an-ip')), 'EINVAL', 'bind');
    expect(e.message).toBe("bind: invalid address 'not-an-ip'");
    expectSysError(() => N.connect(u, v4(1, '127.0.0.1\0x')), 'EINVAL', 'connect');
    expectSysError(() => N.send(u, Buffer.from('x'), 0, v6(1, '::g')), 'EINVAL', 'sendto');
    expectSysError(() => N.bind(u, { family: 12345, path: 'x' }), 'EAFNOSUPPORT', 'bind');
    expectSysError(() => N.socket(12345, C.SOCK_STREAM, 0), 'EAFNOSUPPORT', 'socket');
    expectSysError(() => N.setsockoptInt(u, C.SOL_SOCKET, 9999, 1), 'ENOPROTOOPT', 'setsockopt');
  });
});

describe('UDP', () => {
  it('sendto / recv with from, truncation and zero-length datagrams', async () => {
    const a = sock(C.AF_INET, C.SOCK_DGRAM);
    const b = sock(C.AF_INET, C.SOCK_DGRAM);
    N.bind(a, v4());
    N.bind(b, v4());
    const aName = inetName(a);
    const bName = inetName(b);

    expect(N.send(a, Buffer.from('hi'), 0, bName)).toBe(2);
    await waitFor(b, R);
    const r = N.recv(b, 100, 0);
    expect(text(r.data)).toBe('hi');
    expect(r).toMatchObject({ length: 2, truncated: false });
    expect(r.from).toEqual({ family: C.AF_INET, address: '127.0.0.1', port: aName.port });

    const hundred = Buffer.alloc(100, 7);
    hundred[0] = 1;
    N.send(a, hundred, 0, bName);
    await waitFor(b, R);
    expect(N.ioctlInt(b, C.FIONREAD)).toBe(100);
    const t = N.recv(b, 10, C.MSG_TRUNC);
    expect(t.truncated).toBe(true);
    expect(t.length).toBe(100);
    expect(t.data.length).toBe(10);
    expect(t.data.equals(hundred.subarray(0, 10))).toBe(true);

    N.send(a, hundred, 0, bName);
    await waitFor(b, R);
    const t2 = N.recv(b, 10, 0); // without MSG_TRUNC the kernel returns what fit
    expect([t2.truncated, t2.length, t2.data.length]).toEqual([true, 10, 10]);

    expect(N.send(a, new Uint8Array(0), 0, bName)).toBe(0);
    await waitFor(b, R);
    const z = N.recv(b, 100, 0);
    expect([z.length, z.data.length, z.truncated]).toEqual([0, 0, false]);
    expect((z.from as Inet).port).toBe(aName.port);
    expect(caught(() => N.recv(b, 100, 0)).code).toBe('EAGAIN');

    // connect() fixes the peer; AF_UNSPEC dissolves it again
    N.connect(a, bName);
    N.send(a, Buffer.from('c'), 0);
    await waitFor(b, R);
    expect(text(N.recv(b, 10, 0).data)).toBe('c');
    N.connect(a, { family: C.AF_UNSPEC, path: null });
    expectSysError(() => N.send(a, Buffer.from('c'), 0), 'EDESTADDRREQ', 'send');
  });
});

describe('IPv6 on ::1', () => {
  it('TCP round trip with v6 addresses', async () => {
    const { srv, cli, acc, remote } = await tcpPair(C.AF_INET6);
    const name = inetName(srv);
    expect(name).toMatchObject({ family: C.AF_INET6, address: '::1', flowinfo: 0, scopeId: 0 });
    expect(remote).toEqual(N.getsockname(cli));
    expect((remote as Inet).address).toBe('::1');
    N.send(acc, Buffer.from('six'), 0);
    await waitFor(cli, R);
    expect(text(N.recv(cli, 10, 0).data)).toBe('six');
  });

  it('UDP with from, and IPv4-mapped senders on a dual-stack socket', async () => {
    const a = sock(C.AF_INET6, C.SOCK_DGRAM);
    const b = sock(C.AF_INET6, C.SOCK_DGRAM);
    N.bind(a, v6());
    N.setsockoptInt(b, C.IPPROTO_IPV6, C.IPV6_V6ONLY, 0);
    N.bind(b, v6(0, '::'));
    const port = inetName(b).port;
    N.send(a, Buffer.from('v6'), 0, v6(port));
    await waitFor(b, R);
    const r = N.recv(b, 10, 0);
    expect(r.from).toEqual({ family: C.AF_INET6, address: '::1', port: inetName(a).port, flowinfo: 0, scopeId: 0 });

    const four = sock(C.AF_INET, C.SOCK_DGRAM);
    N.send(four, Buffer.from('v4'), 0, v4(port));
    await waitFor(b, R);
    const m = N.recv(b, 10, 0);
    expect((m.from as Inet).address).toBe('::ffff:127.0.0.1');
    expect((m.from as Inet).port).toBe(inetName(four).port);
  });

  it('IPV6_V6ONLY get/set', () => {
    const s = sock(C.AF_INET6, C.SOCK_STREAM);
    const dflt = Number(readFileSync('/proc/sys/net/ipv6/bindv6only', 'utf8').trim());
    expect(N.getsockoptInt(s, C.IPPROTO_IPV6, C.IPV6_V6ONLY)).toBe(dflt);
    N.setsockoptInt(s, C.IPPROTO_IPV6, C.IPV6_V6ONLY, 1);
    expect(N.getsockoptInt(s, C.IPPROTO_IPV6, C.IPV6_V6ONLY)).toBe(1);
    N.setsockoptInt(s, C.IPPROTO_IPV6, C.IPV6_V6ONLY, 0);
    expect(N.getsockoptInt(s, C.IPPROTO_IPV6, C.IPV6_V6ONLY)).toBe(0);
  });
});

describe('socket options', () => {
  it('int, linger and timeval options', () => {
    const s = sock(C.AF_INET, C.SOCK_STREAM);
    expect(N.getsockoptInt(s, C.SOL_SOCKET, C.SO_REUSEADDR)).toBe(0);
    N.setsockoptInt(s, C.SOL_SOCKET, C.SO_REUSEADDR, 1);
    expect(N.getsockoptInt(s, C.SOL_SOCKET, C.SO_REUSEADDR)).toBe(1);
    expect(N.getsockoptInt(s, C.SOL_SOCKET, C.SO_TYPE)).toBe(C.SOCK_STREAM);
    expect(N.getsockoptInt(s, C.SOL_SOCKET, C.SO_DOMAIN)).toBe(C.AF_INET);
    expect(N.getsockoptInt(s, C.SOL_SOCKET, C.SO_PROTOCOL)).toBe(C.IPPROTO_TCP);
    N.setsockoptInt(s, C.IPPROTO_TCP, C.TCP_NODELAY, 1);
    expect(N.getsockoptInt(s, C.IPPROTO_TCP, C.TCP_NODELAY)).toBe(1);
    N.setsockoptInt(s, C.IPPROTO_IP, C.IP_TTL, 33);
    expect(N.getsockoptInt(s, C.IPPROTO_IP, C.IP_TTL)).toBe(33);

    expect(N.getsockoptLinger(s)).toEqual({ onoff: false, linger: 0 });
    N.setsockoptLinger(s, { onoff: true, linger: 5 });
    expect(N.getsockoptLinger(s)).toEqual({ onoff: true, linger: 5 });

    expect(N.getsockoptTimeval(s, C.SOL_SOCKET, C.SO_RCVTIMEO)).toBe(0);
    N.setsockoptTimeval(s, C.SOL_SOCKET, C.SO_RCVTIMEO, 1500);
    expect(N.getsockoptTimeval(s, C.SOL_SOCKET, C.SO_RCVTIMEO)).toBe(1500);
    N.setsockoptTimeval(s, C.SOL_SOCKET, C.SO_SNDTIMEO, 2000);
    expect(N.getsockoptTimeval(s, C.SOL_SOCKET, C.SO_SNDTIMEO)).toBe(2000);
    N.setsockoptTimeval(s, C.SOL_SOCKET, C.SO_SNDTIMEO, 0);
    expect(N.getsockoptTimeval(s, C.SOL_SOCKET, C.SO_SNDTIMEO)).toBe(0);

    const u = sock(C.AF_INET, C.SOCK_DGRAM);
    expect(N.getsockoptInt(u, C.SOL_SOCKET, C.SO_TYPE)).toBe(C.SOCK_DGRAM);
  });

  it('tcpInfo: established connection and listener queue', async () => {
    const { cli, acc } = await tcpPair();
    const info = N.tcpInfo(cli);
    expect(info.state).toBe(1); // TCP_ESTABLISHED
    expect(N.tcpInfo(acc).state).toBe(1);
    for (const k of [
      'state', 'caState', 'retransmits', 'probes', 'backoff', 'rto', 'ato', 'sndMss', 'rcvMss', 'unacked',
      'sacked', 'lost', 'retrans', 'lastDataSent', 'lastDataRecv', 'pmtu', 'rcvSsthresh', 'rtt', 'rttvar',
      'sndSsthresh', 'sndCwnd', 'advmss', 'reordering', 'totalRetrans',
    ]) {
      expect(Number.isInteger((info as unknown as Record<string, number>)[k]), k).toBe(true);
    }
    expect(info.sndMss).toBeGreaterThan(0);
    expect(info.sndCwnd).toBeGreaterThan(0);

    const srv = sock(C.AF_INET, C.SOCK_STREAM);
    N.bind(srv, v4());
    N.listen(srv, 5);
    const to = inetName(srv);
    for (let i = 0; i < 2; i++) await connectWait(sock(C.AF_INET, C.SOCK_STREAM), to);
    const li = N.tcpInfo(srv);
    expect(li.state).toBe(10); // TCP_LISTEN
    expect(li.unacked).toBe(2); // accept-queue length
    expect(li.sacked).toBe(5); // backlog
    expectSysError(() => N.tcpInfo(sock(C.AF_UNIX, C.SOCK_STREAM)), 'EOPNOTSUPP', 'getsockopt');
  });
});

describe('Unix sockets', () => {
  it('stream on a path: bind, listen, connect, accept; unnamed peer has path null', async () => {
    const path = `${dir}/stream.sock`;
    const srv = sock(C.AF_UNIX, C.SOCK_STREAM);
    N.bind(srv, unix(path));
    expect(N.getsockname(srv)).toEqual(unix(path));
    N.listen(srv, 4);
    const cli = sock(C.AF_UNIX, C.SOCK_STREAM);
    await connectWait(cli, unix(path));
    expect(N.getsockname(cli)).toEqual(unix(null));
    expect(N.getpeername(cli)).toEqual(unix(path));
    const { fd, remote } = N.accept(srv);
    const acc = track(fd);
    expect(fdFlags(acc)).toEqual({ nonblock: true, cloexec: true });
    expect(remote).toEqual(unix(null));
    expect(N.getpeername(acc)).toEqual(unix(null));
    N.send(cli, Buffer.from('unix'), 0);
    const r = N.recv(acc, 100, 0);
    expect(text(r.data)).toBe('unix');
    expect(r.from).toBeNull();
    unlinkSync(path);
  });

  it('SOCK_SEQPACKET keeps message boundaries', async () => {
    const path = `${dir}/seq.sock`;
    const srv = sock(C.AF_UNIX, C.SOCK_SEQPACKET);
    N.bind(srv, unix(path));
    N.listen(srv, 4);
    const cli = sock(C.AF_UNIX, C.SOCK_SEQPACKET);
    await connectWait(cli, unix(path));
    const acc = track(N.accept(srv).fd);
    N.send(cli, Buffer.from('one'), 0);
    N.sendv(cli, [Buffer.from('tw'), Buffer.from('o')], 0);
    N.send(cli, Buffer.from('three'), 0);
    expect(text(N.recv(acc, 100, 0).data)).toBe('one');
    expect(text(N.recv(acc, 100, 0).data)).toBe('two');
    const cut = N.recv(acc, 2, 0);
    expect([text(cut.data), cut.truncated]).toEqual(['th', true]);
    expect(caught(() => N.recv(acc, 100, 0)).code).toBe('EAGAIN'); // the rest of 'three' was discarded
    unlinkSync(path);
  });

  it('socketpair round trip (non-blocking, close-on-exec)', () => {
    const [a, b] = pair(C.AF_UNIX, C.SOCK_STREAM);
    expect(fdFlags(a)).toEqual({ nonblock: true, cloexec: true });
    expect(fdFlags(b)).toEqual({ nonblock: true, cloexec: true });
    expectSysError(() => N.recv(a, 10, 0), 'EAGAIN', 'recvmsg');
    N.send(a, Buffer.from('ab'), 0);
    expect(N.ioctlInt(b, C.SIOCINQ)).toBe(2);
    expect(text(N.recv(b, 10, 0).data)).toBe('ab');
    N.send(b, Buffer.from('ba'), 0);
    expect(text(N.recv(a, 10, 0).data)).toBe('ba');
    // sendv sends at most IOV_MAX (1024) chunks in one call: a short write
    const many = Array.from({ length: 1100 }, (_, i) => Buffer.from([i & 0xff]));
    expect(N.sendv(a, many, 0)).toBe(1024);
    const got = N.recv(b, 2000, 0).data;
    expect(got.length).toBe(1024);
    expect(got.equals(Buffer.concat(many.slice(0, 1024)))).toBe(true);
    const [d1, d2] = pair(C.AF_UNIX, C.SOCK_DGRAM);
    N.send(d1, Buffer.from('x'), 0);
    N.send(d1, Buffer.from('yz'), 0);
    expect(N.recv(d2, 10, 0)).toMatchObject({ length: 1, from: null });
    expect(N.recv(d2, 10, 0).length).toBe(2);
  });

  it('abstract names and autobind', async () => {
    const name = `@sockctl-test-${process.pid}-${Math.random().toString(36).slice(2)}`;
    const srv = sock(C.AF_UNIX, C.SOCK_STREAM);
    N.bind(srv, unix(name));
    expect(N.getsockname(srv)).toEqual(unix(name));
    N.listen(srv, 4);
    const cli = sock(C.AF_UNIX, C.SOCK_STREAM);
    await connectWait(cli, unix(name));
    expect(N.getpeername(cli)).toEqual(unix(name));
    track(N.accept(srv).fd);

    const auto = sock(C.AF_UNIX, C.SOCK_DGRAM);
    N.bind(auto, unix(null)); // the kernel picks an abstract name
    expect((N.getsockname(auto) as { path: string }).path).toMatch(/^@[0-9a-f]{5}$/);
    const d = sock(C.AF_UNIX, C.SOCK_DGRAM);
    N.send(d, Buffer.from('hey'), 0, N.getsockname(auto));
    expect(N.recv(auto, 10, 0).from).toBeNull(); // an unnamed sender has no address to report
  });

  it('ENAMETOOLONG past sun_path; 107 bytes still fit', () => {
    const s = sock(C.AF_UNIX, C.SOCK_STREAM);
    const e = expectSysError(() => N.bind(s, unix(`/tmp/${'x'.repeat(110)}`)), 'ENAMETOOLONG', 'bind');
    expect(e.message).toBe('bind: File name too long');
    expectSysError(() => N.connect(s, unix(`@${'x'.repeat(108)}`)), 'ENAMETOOLONG', 'connect');
    expectSysError(() => N.bind(s, unix('')), 'EINVAL', 'bind');
    expectSysError(() => N.bind(s, unix(`${dir}/a\0b`)), 'EINVAL', 'bind');
    const fit = `${dir}/${'p'.repeat(107 - dir.length - 1)}`;
    expect(fit.length).toBe(107);
    expectSysError(() => N.bind(s, unix(`${fit}q`)), 'ENAMETOOLONG', 'bind');
    N.bind(s, unix(fit));
    expect(N.getsockname(s)).toEqual(unix(fit));
    unlinkSync(fit);
    const a = sock(C.AF_UNIX, C.SOCK_STREAM);
    const longAbstract = `@${'a'.repeat(106)}${process.pid % 10}`;
    N.bind(a, unix(longAbstract));
    expect(N.getsockname(a)).toEqual(unix(longAbstract));
  });
});

describe('unixQueue (sock_diag)', () => {
  /** A Unix listener of `type` on a fresh path with `backlog`, and its address. */
  function unixListener(type: number, backlog: number, name: string): { srv: number; at: SockAddr; path: string } {
    const path = `${dir}/${name}`;
    const at = unix(path);
    const srv = sock(C.AF_UNIX, type);
    N.bind(srv, at);
    N.listen(srv, backlog);
    return { srv, at, path };
  }

  it.each([
    ['SOCK_STREAM', 'q-stream.sock'],
    ['SOCK_SEQPACKET', 'q-seq.sock'],
  ] as const)('a %s listener: rqueue = connections not accepted yet, wqueue = backlog', async (type, name) => {
    const { srv, at, path } = unixListener(C[type], 5, name);
    expect(N.unixQueue(srv)).toEqual({ rqueue: 0, wqueue: 5 });
    for (let i = 0; i < 2; i++) await connectWait(sock(C.AF_UNIX, C[type]), at);
    expect(N.unixQueue(srv)).toEqual({ rqueue: 2, wqueue: 5 });
    track(N.accept(srv).fd);
    expect(N.unixQueue(srv)).toEqual({ rqueue: 1, wqueue: 5 });
    track(N.accept(srv).fd);
    expect(N.unixQueue(srv)).toEqual({ rqueue: 0, wqueue: 5 });
    unlinkSync(path);
  });

  it('the queue holds backlog + 1 connections; the next connect is EAGAIN', async () => {
    const { srv, at, path } = unixListener(C.SOCK_STREAM, 1, 'q-full.sock');
    for (let i = 0; i < 2; i++) N.connect(sock(C.AF_UNIX, C.SOCK_STREAM), at);
    expect(N.unixQueue(srv)).toEqual({ rqueue: 2, wqueue: 1 });
    expectSysError(() => N.connect(sock(C.AF_UNIX, C.SOCK_STREAM), at), 'EAGAIN', 'connect');
    expect(N.unixQueue(srv)).toEqual({ rqueue: 2, wqueue: 1 });
    unlinkSync(path);
  });

  it('answers for other Unix sockets too (their byte queues); null for a socket sock_diag has no Unix entry for', () => {
    const [a, b] = pair(C.AF_UNIX, C.SOCK_STREAM);
    N.send(a, Buffer.from('abc'), 0);
    expect(N.unixQueue(b)?.rqueue).toBe(3); // the exact lookup ignores udiag_states
    expect(N.unixQueue(a)?.rqueue).toBe(0);
    const tcp = sock(C.AF_INET, C.SOCK_STREAM);
    N.bind(tcp, v4());
    N.listen(tcp, 3);
    expect(N.unixQueue(tcp)).toBeNull();
  });

  it('errors: EBADF from fstat on a closed fd, ENOTSOCK for a file, argument checks', () => {
    const s = sock(C.AF_UNIX, C.SOCK_STREAM);
    closeFd(s);
    const e = expectSysError(() => N.unixQueue(s), 'EBADF', 'fstat');
    expect(e.message).toBe('fstat: Bad file descriptor');
    expectSysError(() => N.unixQueue(-1), 'EBADF', 'fstat');
    const file = openSync(`${dir}/not-a-socket`, 'w');
    try {
      expectSysError(() => N.unixQueue(file), 'ENOTSOCK', 'unixQueue');
    } finally {
      closeSync(file);
    }
    const te = caught(() => N.unixQueue('3' as unknown as number));
    expect(te).toBeInstanceOf(TypeError);
    expect(te.code).toBe('ERR_INVALID_ARG_TYPE');
    expect(caught(() => N.unixQueue(1.5)).code).toBe('ERR_OUT_OF_RANGE');
  });

  it('leaks no fd: 1000 calls on every path (answer, null, EBADF) leave fdCount unchanged', () => {
    const { srv, at, path } = unixListener(C.SOCK_STREAM, 5, 'q-leak.sock');
    N.connect(sock(C.AF_UNIX, C.SOCK_STREAM), at);
    const tcp = sock(C.AF_INET, C.SOCK_STREAM);
    const gone = sock(C.AF_UNIX, C.SOCK_STREAM);
    closeFd(gone);
    const before = N.fdCount();
    for (let i = 0; i < 1000; i++) {
      expect(N.unixQueue(srv)).toEqual({ rqueue: 1, wqueue: 5 });
      if (i % 10 === 0) {
        expect(N.unixQueue(tcp)).toBeNull();
        expect(caught(() => N.unixQueue(gone)).code).toBe('EBADF');
      }
    }
    expect(N.fdCount()).toBe(before);
    unlinkSync(path);
  });
});

describe('tcpDiagState (sock_diag, exact inet_diag lookup)', () => {
  const ESTABLISHED = 1, FIN_WAIT2 = 5, TIME_WAIT = 6, CLOSE_WAIT = 8, LISTEN = 10;

  /** Polls tcpDiagState(local, remote) until it is `want` (loopback moves fast, but not within the call). */
  async function untilState(local: SockAddr, remote: SockAddr, want: number | null): Promise<number | null> {
    let got = N.tcpDiagState(local, remote);
    for (let i = 0; i < 200 && got !== want; i++) {
      await sleep(10);
      got = N.tcpDiagState(local, remote);
    }
    return got;
  }

  /** A connection's two ends by their fds, with each end's (local, remote) pair. */
  async function connection(family: number) {
    const { srv, cli, acc } = await tcpPair(family);
    const c = inetName(cli), a = inetName(acc);
    return { srv, cli, acc, c, a };
  }

  it.each([
    ['127.0.0.1', C.AF_INET],
    ['::1', C.AF_INET6],
  ] as const)('on %s: ESTABLISHED both ways; after the active closer closes, TIME_WAIT for its pair', async (_, family) => {
    const { cli, acc, c, a } = await connection(family);
    expect(N.tcpDiagState(c, a)).toBe(ESTABLISHED);
    expect(N.tcpDiagState(a, c)).toBe(ESTABLISHED);
    closeFd(cli); // active close: FIN_WAIT2 (an orphan), the accepted end CLOSE_WAIT
    expect(await untilState(c, a, FIN_WAIT2)).toBe(FIN_WAIT2);
    expect(await untilState(a, c, CLOSE_WAIT)).toBe(CLOSE_WAIT);
    closeFd(acc); // LAST_ACK, then gone; the closer's side in TIME_WAIT (a timewait sock, no fd anywhere)
    expect(await untilState(c, a, TIME_WAIT)).toBe(TIME_WAIT);
    expect(await untilState(a, c, null)).toBeNull();
  });

  it.each([
    ['127.0.0.1', C.AF_INET],
    ['::1', C.AF_INET6],
  ] as const)('on %s: a half-closed pair: FIN_WAIT2 on the closer (open fd), CLOSE_WAIT on the peer', async (_, family) => {
    const { cli, c, a } = await connection(family);
    N.shutdown(cli, C.SHUT_WR);
    expect(await untilState(c, a, FIN_WAIT2)).toBe(FIN_WAIT2);
    expect(await untilState(a, c, CLOSE_WAIT)).toBe(CLOSE_WAIT);
    expect(N.tcpInfo(cli).state).toBe(FIN_WAIT2);
  });

  it('null for a made-up pair, and for a pair whose local port is a listener\'s (the lookup\'s listener fallback)', async () => {
    const port = closedPort();
    expect(N.tcpDiagState(v4(port), v4(closedPort()))).toBeNull();
    expect(N.tcpDiagState(v6(closedPort()), v6(1))).toBeNull();
    const { srv, c, a } = await connection(C.AF_INET);
    const at = inetName(srv);
    expect(N.tcpDiagState(at, { ...c, port: c.port === 65535 ? 1 : c.port + 1 })).toBeNull();
    expect(N.tcpDiagState(a, v4(1, '127.0.0.2'))).toBeNull();
    expect(N.tcpDiagState(at, v4(0, '0.0.0.0'))).toBe(LISTEN); // the listener's own id
  });

  it('a dual-stack AF_INET6 socket on IPv4: found with the v4-mapped pair and with the plain IPv4 pair', async () => {
    const srv = sock(C.AF_INET, C.SOCK_STREAM);
    N.bind(srv, v4());
    N.listen(srv, 4);
    const cli = sock(C.AF_INET6, C.SOCK_STREAM);
    N.setsockoptInt(cli, C.IPPROTO_IPV6, C.IPV6_V6ONLY, 0);
    await connectWait(cli, v6(inetName(srv).port, '::ffff:127.0.0.1'));
    await waitFor(srv, R);
    track(N.accept(srv).fd);
    const local = inetName(cli), remote = N.getpeername(cli) as Inet;
    expect(local).toMatchObject({ family: C.AF_INET6, address: '::ffff:127.0.0.1' });
    expect(N.tcpDiagState(local, remote)).toBe(ESTABLISHED);
    expect(N.tcpDiagState(v4(local.port), v4(remote.port))).toBe(ESTABLISHED);
    expect(N.tcpDiagState(local, v4(remote.port))).toBe(ESTABLISHED); // mixed: the IPv4 side is mapped
    expect(N.tcpDiagState(v4(remote.port), v4(local.port))).toBe(ESTABLISHED); // the AF_INET accepted end
    expect(N.tcpDiagState(v6(remote.port, '::ffff:127.0.0.1'), local)).toBe(ESTABLISHED);
  });

  it('errors: EAFNOSUPPORT for a non-inet family, EINVAL for a bad address (no syscall), argument checks', () => {
    let e = expectSysError(() => N.tcpDiagState(unix('/tmp/x'), v4(1)), 'EAFNOSUPPORT', 'tcpDiagState');
    expect(e.message).toBe('tcpDiagState: Address family not supported by protocol');
    expectSysError(() => N.tcpDiagState(v4(1), { family: C.AF_UNSPEC } as SockAddr), 'EAFNOSUPPORT', 'tcpDiagState');
    e = expectSysError(() => N.tcpDiagState(v4(1, '999.0.0.1'), v4(2)), 'EINVAL', 'tcpDiagState');
    expect(e.message).toBe("tcpDiagState: invalid address '999.0.0.1'");
    expectSysError(() => N.tcpDiagState(v6(1), v6(2, '::1::')), 'EINVAL', 'tcpDiagState');
    const te = caught(() => N.tcpDiagState(null as unknown as SockAddr, v4(1)));
    expect(te).toBeInstanceOf(TypeError);
    expect(te.code).toBe('ERR_INVALID_ARG_TYPE');
    expect(caught(() => N.tcpDiagState(v4(70000), v4(1))).code).toBe('ERR_OUT_OF_RANGE');
  });

  it('leaks no fd: 1000 calls (found, null, error paths) leave fdCount unchanged', async () => {
    const { c, a } = await connection(C.AF_INET);
    const { c: c6, a: a6 } = await connection(C.AF_INET6);
    const nowhere = v4(closedPort());
    const before = N.fdCount();
    for (let i = 0; i < 1000; i++) {
      expect(N.tcpDiagState(c, a)).toBe(ESTABLISHED);
      if (i % 10 === 0) {
        expect(N.tcpDiagState(a6, c6)).toBe(ESTABLISHED);
        expect(N.tcpDiagState(nowhere, a)).toBeNull();
        expect(caught(() => N.tcpDiagState(unix(null), a)).code).toBe('EAFNOSUPPORT');
      }
    }
    expect(N.fdCount()).toBe(before);
  });
});

describe('Poller', () => {
  it('is one-shot: no callback while idle, exactly one when data arrives', async () => {
    const [a, b] = pair(C.AF_UNIX, C.SOCK_STREAM);
    const calls: Array<[number, number]> = [];
    const p = N.createPoller(a, (status, events) => calls.push([status, events]));
    pollers.add(p);
    p.start(R);
    await sleep(30);
    expect(calls).toEqual([]);
    N.send(b, Buffer.from('data'), 0);
    await sleep(50); // the data stays unread and the poller is not re-armed
    expect(calls).toEqual([[0, R]]);
    p.start(R); // re-armed: still readable, so it fires again, once
    await sleep(30);
    expect(calls).toEqual([[0, R], [0, R]]);
    p.start(R);
    p.start(W); // start while armed replaces the events
    await sleep(30);
    expect(calls.length).toBe(3);
    expect((calls[2]?.[1] ?? 0) & W).toBe(W);
  });

  it('stop() prevents the callback; close() is final', async () => {
    const [a, b] = pair(C.AF_UNIX, C.SOCK_STREAM);
    let calls = 0;
    const p = N.createPoller(a, () => calls++);
    pollers.add(p);
    p.start(R);
    p.stop();
    p.stop();
    N.send(b, Buffer.from('x'), 0);
    await sleep(40);
    expect(calls).toBe(0);
    p.start(R);
    p.close();
    await sleep(20);
    expect(calls).toBe(0);
    p.close();
    p.stop();
    expectSysError(() => p.start(R), 'EBADF', 'uv_poll_start');
    const other = { start: p.start };
    expect(caught(() => other.start(R))).toBeInstanceOf(TypeError); // not a Poller
    const Ctor = p.constructor as new () => Poller;
    expect(caught(() => new Ctor().start(R)).code).toBe('ERR_INVALID_THIS'); // a Poller without a handle
    expect(caught(() => p.start(64)).code).toBe('ERR_OUT_OF_RANGE');
  });

  it('close(fd) closes a poller left open on that fd', async () => {
    const [a, b] = pair(C.AF_UNIX, C.SOCK_STREAM);
    let calls = 0;
    const p = N.createPoller(a, () => calls++);
    pollers.add(p);
    p.start(R);
    closeFd(a);
    expectSysError(() => p.start(R), 'EBADF', 'uv_poll_start');
    // the fd number is free for reuse; the old poller never fires for the new socket
    const [c, d] = pair(C.AF_UNIX, C.SOCK_STREAM);
    const ready = waitFor(c, R);
    N.send(d, Buffer.from('y'), 0);
    expect(await ready).toEqual({ status: 0, events: R });
    await sleep(20);
    expect(calls).toBe(0);
    void b;
  });

  it('drains nextTicks and microtasks after each callback (napi_make_callback)', async () => {
    // Three fds are readable before the loop polls, so the three callbacks come from one epoll batch.
    // Called without a callback scope (napi_call_function), their continuations would all wait for the
    // end of the batch: cb0 cb1 cb2 tick0 ... await0 ...
    const order: string[] = [];
    const chains: Promise<void>[] = [];
    for (let i = 0; i < 3; i++) {
      const [a, b] = pair(C.AF_UNIX, C.SOCK_STREAM);
      N.send(b, Buffer.from('x'), 0);
      chains.push(
        (async () => {
          await new Promise<void>((resolve) => {
            const p = N.createPoller(a, () => {
              order.push(`cb${i}`);
              process.nextTick(() => order.push(`tick${i}`));
              resolve();
            });
            pollers.add(p);
            p.start(R);
          });
          order.push(`await${i}`);
          await null;
          order.push(`again${i}`);
        })(),
      );
    }
    await Promise.all(chains);
    expect(order.length).toBe(12);
    for (let at = 0; at < order.length; at += 4) {
      const i = (order[at] ?? '').slice(2);
      expect(order.slice(at, at + 4)).toEqual([`cb${i}`, `tick${i}`, `await${i}`, `again${i}`]);
    }
  });

  it('exceptions thrown by the callback reach uncaughtException', async () => {
    const [a, b] = pair(C.AF_UNIX, C.SOCK_STREAM);
    const seen: unknown[] = [];
    const listeners = process.listeners('uncaughtException');
    process.removeAllListeners('uncaughtException');
    process.on('uncaughtException', (e) => seen.push(e));
    try {
      const p = N.createPoller(a, () => {
        throw new Error('boom');
      });
      pollers.add(p);
      p.start(R);
      N.send(b, Buffer.from('x'), 0);
      await sleep(30);
    } finally {
      process.removeAllListeners('uncaughtException');
      for (const l of listeners) process.on('uncaughtException', l);
    }
    expect(seen.map((e) => (e as Error).message)).toEqual(['boom']);
  });

  it('a poller garbage-collected without close() is closed by its finalizer', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const before = N.fdCount();
    let finalized = 0;
    const registry = new FinalizationRegistry(() => finalized++);
    let fired = 0;
    const ends: number[] = [];
    (() => {
      for (let i = 0; i < 50; i++) {
        const [a, b] = N.socketpair(C.AF_UNIX, C.SOCK_STREAM, 0);
        ends.push(a, b);
        const p = N.createPoller(a, () => fired++);
        if (i % 2) p.start(R);
        registry.register(p, i);
      }
    })();
    for (let i = 0; i < 10 && finalized < 50; i++) {
      gc();
      await new Promise((r) => setImmediate(r));
    }
    expect(finalized).toBeGreaterThan(0);
    for (let i = 0; i < ends.length; i += 2) N.send(ends[i + 1] ?? -1, Buffer.from('x'), 0);
    await sleep(20);
    expect(fired).toBeLessThanOrEqual(25); // only started pollers not yet collected may fire
    for (const fd of ends) N.close(fd); // closes any poller still open on them
    expect(N.fdCount()).toBe(before);
  });
});

describe('Poller reading mode (the streaming reader)', () => {
  type Batch = { slots: number[]; lengths: number[]; eof: boolean; error: SysError | null; bytes: Buffer[] };

  /** A reader on fd that records each callback (with copies of the bytes) and keeps the slots unless `autoRelease`. */
  function reading(fd: number, slots: number, slotBytes: number, budget: number, opts: { autoRelease?: boolean; onBatch?: (b: Batch) => void } = {}) {
    const batches: Batch[] = [];
    const tables: Uint32Array[] = [];
    let pool: Buffer;
    const jsCalls: Array<[number, number]> = [];
    const p = N.createPoller(fd, (status, events) => jsCalls.push([status, events]));
    pollers.add(p);
    pool = Buffer.from(
      p.startReading(slots, slotBytes, budget, (table, count, eof, error) => {
        const s = Array.from({ length: count }, (_, i) => table[2 * i]!);
        const l = Array.from({ length: count }, (_, i) => table[2 * i + 1]!);
        // one table, the same for every callback: [slot, length] pairs from its start
        expect(table.length).toBe(2 * slots);
        if (!tables.includes(table)) tables.push(table);
        expect(tables).toHaveLength(1);
        const b: Batch = { slots: s, lengths: l, eof, error: error as SysError | null, bytes: s.map((slot, i) => Buffer.from(pool.subarray(slot * slotBytes, slot * slotBytes + (l[i] ?? 0)))) };
        batches.push(b);
        opts.onBatch?.(b);
        if (opts.autoRelease) for (const slot of s) expect(p.release(slot)).toBe(true);
      }),
    );
    const bytes = () => Buffer.concat(batches.flatMap((b) => b.bytes));
    return { p, batches, jsCalls, bytes, pool: () => pool };
  }

  /** Resolves once cond() holds (polling every 5 ms), or fails after ms. */
  async function until(cond: () => boolean, what: string, ms = 2000): Promise<void> {
    const end = Date.now() + ms;
    while (!cond()) {
      if (Date.now() > end) throw new Error(`timed out: ${what}`);
      await sleep(5);
    }
  }

  it('reads what arrives into a slot and hands it over in one callback; the slot is the caller\'s until release', async () => {
    const [a, b] = pair(C.AF_UNIX, C.SOCK_STREAM);
    const r = reading(a, 4, 1024, 4096);
    expect(r.pool().length).toBe(4 * 1024);
    expect(r.p.stats()).toMatchObject({ reading: true, slots: 4, freeSlots: 4, armed: R, paused: false, eof: false });
    await sleep(30);
    expect(r.batches).toEqual([]); // idle: nothing, and no wake-up
    expect(r.p.stats().wakeups).toBe(0);
    N.send(b, Buffer.from('hello'), 0);
    await until(() => r.batches.length === 1, 'first batch');
    expect(r.batches[0]).toMatchObject({ slots: [0], lengths: [5], eof: false, error: null });
    expect(text(r.batches[0]!.bytes[0]!)).toBe('hello');
    expect(text(r.pool().subarray(0, 5))).toBe('hello'); // no copy: the bytes are in the pool
    expect(r.p.stats()).toMatchObject({ freeSlots: 3, armed: R, reads: 1, readCallbacks: 1 });
    // the slot is held: the next read goes to another one
    N.send(b, Buffer.from('world'), 0);
    await until(() => r.batches.length === 2, 'second batch');
    expect(r.batches[1]).toMatchObject({ slots: [1], lengths: [5] });
    expect(text(r.pool().subarray(0, 5))).toBe('hello');
    expect(r.p.release(0)).toBe(true);
    expect(r.p.release(0)).toBe(false); // twice: not held any more
    expect(r.p.release(3)).toBe(false); // never handed over
    expect(caught(() => r.p.release(1024)).code).toBe('ERR_OUT_OF_RANGE');
    expect(caught(() => r.p.release(-1)).code).toBe('ERR_OUT_OF_RANGE');
    // the released slot is reused first (warm)
    N.send(b, Buffer.from('again'), 0);
    await until(() => r.batches.length === 3, 'third batch');
    expect(r.batches[2]).toMatchObject({ slots: [0], lengths: [5] });
    expect(r.p.stats().freeSlots).toBe(2);
  });

  it('stays armed while it reads (no re-arm from JS); one-shot waits keep their semantics next to it', async () => {
    const [a, b] = pair(C.AF_UNIX, C.SOCK_STREAM);
    const r = reading(a, 4, 1024, 4096, { autoRelease: true });
    r.p.start(W); // a one-shot wait for writable: fires once, while the reader goes on
    await until(() => r.jsCalls.length === 1, 'writable');
    expect(r.jsCalls).toEqual([[0, W]]);
    for (let i = 0; i < 5; i++) {
      N.send(b, Buffer.from(`m${i}`), 0);
      await until(() => r.batches.length === i + 1, `batch ${i}`);
      expect(r.p.stats().armed).toBe(R); // still armed for readable, nothing else
    }
    expect(text(r.bytes())).toBe('m0m1m2m3m4');
    expect(r.jsCalls).toHaveLength(1); // readable events do not fire a wait that asked for writable
    // a one-shot readable wait fires once on the next data, next to the reader
    r.p.start(R);
    N.send(b, Buffer.from('x'), 0);
    await until(() => r.jsCalls.length === 2 && r.batches.length === 6, 'readable wait and batch');
    expect(r.jsCalls[1]).toEqual([0, R]);
    N.send(b, Buffer.from('y'), 0);
    await until(() => r.batches.length === 7, 'batch 7');
    await sleep(20);
    expect(r.jsCalls).toHaveLength(2);
    // stop() disarms the wait only
    r.p.start(W);
    r.p.stop();
    N.send(b, Buffer.from('z'), 0);
    await until(() => r.batches.length === 8, 'batch 8');
    expect(r.jsCalls).toHaveLength(2);
    expect(text(r.bytes())).toBe('m0m1m2m3m4xyz');
    // one readable event, one callback: never more callbacks than wake-ups, and no empty reads
    const s = r.p.stats();
    expect(s.readCallbacks).toBe(8);
    expect(s.wakeups).toBeLessThanOrEqual(8 + 3);
    expect(s.emptyReads).toBe(0);
  });

  it('no wake-ups while paused or with the pool empty; release and resume re-arm', async () => {
    const [a, b] = pair(C.AF_UNIX, C.SOCK_STREAM);
    const r = reading(a, 2, 16, 1024);
    N.send(b, Buffer.alloc(100, 'a'), 0);
    await until(() => r.batches.length === 1, 'first batch');
    // both slots filled in one event (the budget allows more), then the pool is empty: the poll is off
    expect(r.batches[0]).toMatchObject({ slots: [0, 1], lengths: [16, 16] });
    expect(r.p.stats()).toMatchObject({ freeSlots: 0, armed: 0 });
    const w0 = r.p.stats().wakeups;
    await sleep(60); // 68 bytes wait in the kernel: an armed poll would wake the loop again and again
    expect(r.p.stats().wakeups).toBe(w0);
    expect(r.batches).toHaveLength(1);
    expect(r.p.release(1)).toBe(true); // re-armed: the next 16 bytes
    await until(() => r.batches.length === 2, 'after release');
    expect(r.batches[1]).toMatchObject({ slots: [1], lengths: [16] });
    r.p.release(0);
    r.p.release(1);
    await until(() => r.batches.length === 3, 'after releases');
    expect(r.batches[2]!.lengths).toEqual([16, 16]);
    for (const s of r.batches[2]!.slots) r.p.release(s);
    await until(() => r.batches.length === 4, 'the last 20 bytes');
    expect(r.batches[3]!.lengths).toEqual([16, 4]); // a short read ends the event
    for (const s of r.batches[3]!.slots) r.p.release(s);
    // paused: data waits in the kernel, no wake-up, no callback
    r.p.pauseReading();
    expect(r.p.stats()).toMatchObject({ paused: true, armed: 0, freeSlots: 2 });
    N.send(b, Buffer.from('later'), 0);
    const w1 = r.p.stats().wakeups;
    await sleep(60);
    expect(r.p.stats().wakeups).toBe(w1);
    expect(r.batches).toHaveLength(4);
    r.p.resumeReading();
    await until(() => r.batches.length === 5, 'after resume');
    expect(text(r.batches[4]!.bytes[0]!)).toBe('later');
    expect(r.bytes().length).toBe(105);
  });

  it('stops each event at the byte budget and at a short read; every byte arrives in order', async () => {
    const [a, b] = pair(C.AF_UNIX, C.SOCK_STREAM);
    N.setsockoptInt(b, C.SOL_SOCKET, C.SO_SNDBUF, 1 << 20);
    const big = Buffer.alloc(600_000);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7) % 253;
    const r = reading(a, 16, 8192, 20_000, { autoRelease: true });
    let sent = 0;
    while (sent < big.length) {
      try {
        sent += N.send(b, big.subarray(sent), 0);
      } catch (e) {
        expect((e as SysError).code).toBe('EAGAIN');
        await sleep(2);
      }
    }
    await until(() => r.bytes().length === big.length, 'all bytes');
    expect(r.bytes().equals(big)).toBe(true);
    for (const batch of r.batches) {
      const n = batch.lengths.reduce((x, y) => x + y, 0);
      expect(n).toBeLessThanOrEqual(20_000 + 8192); // the budget, rounded up to whole slots
      expect(batch.lengths.slice(0, -1).every((l) => l === 8192)).toBe(true); // only the last slot partly filled
    }
    expect(r.batches.length).toBeGreaterThanOrEqual(Math.ceil(big.length / (20_000 + 8192)));
  });

  it('EOF: the data first, then eof in the same or a later callback; the poll is off after it', async () => {
    const [a, b] = pair(C.AF_UNIX, C.SOCK_STREAM);
    const r = reading(a, 4, 1024, 4096, { autoRelease: true });
    N.send(b, Buffer.from('tail'), 0);
    closeFd(b);
    await until(() => r.batches.some((x) => x.eof), 'eof');
    expect(text(r.bytes())).toBe('tail');
    const last = r.batches.at(-1)!;
    expect(last.eof).toBe(true);
    expect(last.error).toBeNull();
    expect(r.p.stats()).toMatchObject({ eof: true, armed: 0 });
    const w = r.p.stats().wakeups;
    const n = r.batches.length;
    r.p.resumeReading(); // nothing more after EOF
    await sleep(60); // the fd stays readable (EOF) for ever: an armed poll would spin
    expect(r.p.stats().wakeups).toBe(w);
    expect(r.batches).toHaveLength(n);
    expect(r.batches.filter((x) => x.eof)).toHaveLength(1);
  });

  it('ECONNRESET reaches the callback (code, errno, syscall recvmsg) and pauses; resumed, the next read is EOF', async () => {
    const { cli, acc } = await tcpPair();
    const r = reading(acc, 4, 1024, 4096, { autoRelease: true });
    N.send(cli, Buffer.from('before reset'), 0);
    await until(() => r.batches.length === 1, 'data');
    N.setsockoptLinger(cli, { onoff: true, linger: 0 });
    closeFd(cli); // RST
    await until(() => r.batches.some((x) => x.error), 'error');
    const err = r.batches.find((x) => x.error)!.error!;
    expect(err).toBeInstanceOf(Error);
    expect({ code: err.code, errno: err.errno, syscall: err.syscall }).toEqual({ code: 'ECONNRESET', errno: C.ECONNRESET, syscall: 'recvmsg' });
    expect(err.message).toBe('recvmsg: Connection reset by peer');
    expect(r.p.stats()).toMatchObject({ paused: true, armed: 0 });
    const w = r.p.stats().wakeups;
    await sleep(50);
    expect(r.p.stats().wakeups).toBe(w);
    r.p.resumeReading();
    await until(() => r.batches.some((x) => x.eof), 'eof after the reset');
    expect(text(r.bytes())).toBe('before reset');
  });

  it('close while reading: no callback after it, held views stay valid, release is a no-op', async () => {
    const [a, b] = pair(C.AF_UNIX, C.SOCK_STREAM);
    const r = reading(a, 4, 1024, 4096);
    N.send(b, Buffer.from('kept'), 0);
    await until(() => r.batches.length === 1, 'data');
    const slot = r.batches[0]!.slots[0]!;
    const view = r.pool().subarray(slot * 1024, slot * 1024 + 4);
    N.send(b, Buffer.from('more'), 0);
    closeFd(a); // closes the poller first, and the reader with it
    await sleep(40);
    expect(r.batches).toHaveLength(1);
    expect(text(view)).toBe('kept'); // V8 owns the pool: still there
    expect(r.p.release(slot)).toBe(false);
    expect(r.p.stats()).toMatchObject({ reading: false, armed: 0 });
    r.p.pauseReading(); // no-ops without a reader
    r.p.resumeReading();
    r.p.stopReading();
    expectSysError(() => r.p.start(R), 'EBADF', 'uv_poll_start');
    expectSysError(() => r.p.startReading(1, 1, 1, () => {}), 'EBADF', 'uv_poll_start');
    void b;
  });

  it('stopReading and Poller.close end it too; a new reader starts over with a new pool', async () => {
    const [a, b] = pair(C.AF_UNIX, C.SOCK_STREAM);
    const r = reading(a, 2, 64, 128);
    N.send(b, Buffer.from('one'), 0);
    await until(() => r.batches.length === 1, 'data');
    r.p.stopReading();
    r.p.stopReading(); // idempotent
    expect(r.p.stats()).toMatchObject({ reading: false, armed: 0 });
    expect(r.p.release(r.batches[0]!.slots[0]!)).toBe(false);
    N.send(b, Buffer.from('two'), 0);
    await sleep(30);
    expect(r.batches).toHaveLength(1); // the data waits in the kernel
    const got: string[] = [];
    let pool2: Buffer;
    pool2 = Buffer.from(r.p.startReading(2, 64, 128, (t) => got.push(text(pool2.subarray(t[0]! * 64, t[0]! * 64 + t[1]!)))));
    await until(() => got.length === 1, 'second reader');
    expect(got).toEqual(['two']);
    expect(text(r.pool().subarray(0, 3))).toBe('one'); // the first pool is untouched
    r.p.close();
    N.send(b, Buffer.from('three'), 0);
    await sleep(30);
    expect(got).toEqual(['two']);
  });

  it('refuses non-stream sockets, a second reader and bad arguments', () => {
    const [d] = pair(C.AF_UNIX, C.SOCK_DGRAM);
    const pd = N.createPoller(d, () => {});
    pollers.add(pd);
    expectSysError(() => pd.startReading(2, 64, 64, () => {}), 'EOPNOTSUPP', 'startReading');
    expect(pd.stats().reading).toBe(false);
    const [a] = pair(C.AF_UNIX, C.SOCK_STREAM);
    const p = N.createPoller(a, () => {});
    pollers.add(p);
    expect(caught(() => p.startReading(0, 64, 64, () => {})).code).toBe('ERR_OUT_OF_RANGE');
    expect(caught(() => p.startReading(2, 0, 64, () => {})).code).toBe('ERR_OUT_OF_RANGE');
    expect(caught(() => p.startReading(1024, 64 * 1024 * 1024, 64, () => {})).code).toBe('ERR_OUT_OF_RANGE');
    expect(caught(() => p.startReading(2, 64, 64, null as unknown as () => void)).code).toBe('ERR_INVALID_ARG_TYPE');
    p.startReading(2, 64, 64, () => {});
    expect(caught(() => p.startReading(2, 64, 64, () => {})).code).toBe('ERR_INVALID_STATE');
  });

  it('drains nextTicks and microtasks after each read callback (napi_make_callback)', async () => {
    const order: string[] = [];
    const chains: Promise<void>[] = [];
    for (let i = 0; i < 3; i++) {
      const [a, b] = pair(C.AF_UNIX, C.SOCK_STREAM);
      N.send(b, Buffer.from('x'), 0);
      chains.push(
        (async () => {
          await new Promise<void>((resolve) => {
            const p = N.createPoller(a, () => {});
            pollers.add(p);
            p.startReading(1, 16, 16, () => {
              order.push(`cb${i}`);
              process.nextTick(() => order.push(`tick${i}`));
              p.stopReading();
              resolve();
            });
          });
          order.push(`await${i}`);
        })(),
      );
    }
    await Promise.all(chains);
    expect(order.length).toBe(9);
    for (let at = 0; at < order.length; at += 3) {
      const i = (order[at] ?? '').slice(2);
      expect(order.slice(at, at + 3)).toEqual([`cb${i}`, `tick${i}`, `await${i}`]);
    }
  });

  it('pollers garbage-collected while reading are closed by their finalizer; no fd or handle is left', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const before = N.fdCount();
    let finalized = 0;
    const registry = new FinalizationRegistry(() => finalized++);
    const ends: number[] = [];
    (() => {
      for (let i = 0; i < 20; i++) {
        const [a, b] = N.socketpair(C.AF_UNIX, C.SOCK_STREAM, 0);
        ends.push(a, b);
        const p = N.createPoller(a, () => {});
        p.startReading(2, 4096, 4096, () => {});
        registry.register(p, i);
      }
    })();
    for (let i = 0; i < 10 && finalized < 20; i++) {
      gc();
      await new Promise((r) => setImmediate(r));
    }
    for (let i = 0; i < ends.length; i += 2) N.send(ends[i + 1] ?? -1, Buffer.from('x'), 0);
    await sleep(20);
    for (const fd of ends) N.close(fd);
    expect(N.fdCount()).toBe(before);
  });
});

describe('no fd leaks', () => {
  it('thousands of mixed operations leave the fd count unchanged', async () => {
    const before = N.fdCount();
    expect(readdirSync('/proc/self/fd').length - 1).toBe(before); // readdir's own fd is listed too

    const held = N.socket(C.AF_INET, C.SOCK_STREAM, 0);
    N.bind(held, v4());
    N.listen(held, 128);
    const heldAddr = inetName(held);
    const refused = v4(closedPort());
    const codes = new Map<string, number>();
    const count = (e: unknown) => {
      const code = (e as SysError).code;
      codes.set(code, (codes.get(code) ?? 0) + 1);
    };
    let accepted = 0;

    for (let i = 0; i < 3000; i++) {
      const opened: number[] = [];
      const open = (fd: number) => (opened.push(fd), fd);
      try {
        switch (i % 8) {
          case 0: // EADDRINUSE
            N.bind(open(N.socket(C.AF_INET, C.SOCK_STREAM, 0)), heldAddr);
            break;
          case 1: // EINPROGRESS or ECONNREFUSED
            N.connect(open(N.socket(C.AF_INET, C.SOCK_STREAM, 0)), refused);
            break;
          case 2: {
            const c = open(N.socket(C.AF_INET, C.SOCK_STREAM, 0));
            try {
              N.connect(c, heldAddr);
            } catch (e) {
              count(e);
            }
            open(N.accept(held).fd); // loopback handshakes complete within connect(): usually queued already
            accepted++;
            break;
          }
          case 3: {
            const [a, b] = N.socketpair(C.AF_UNIX, i % 16 === 3 ? C.SOCK_STREAM : C.SOCK_SEQPACKET, 0);
            open(a);
            open(b);
            const p = N.createPoller(a, () => {});
            p.start(R | W);
            if (i % 16 === 3) p.close(); // otherwise close(a) closes it
            N.send(b, Buffer.from('x'), 0);
            N.recv(a, 1, 0);
            N.recv(a, 1, 0); // EAGAIN
            break;
          }
          case 4: // EINVAL
            N.bind(open(N.socket(C.AF_INET6, C.SOCK_DGRAM, 0)), v6(0, 'zz::zz'));
            break;
          case 5: // ENAMETOOLONG
            N.connect(open(N.socket(C.AF_UNIX, C.SOCK_STREAM, 0)), unix(`/tmp/${'l'.repeat(120)}`));
            break;
          case 6: // EOPNOTSUPP
            N.listen(open(N.socket(C.AF_INET6, C.SOCK_DGRAM, 0)), 1);
            break;
          default: {
            const t = open(N.socket(C.AF_INET, C.SOCK_STREAM, 0));
            N.createPoller(t, () => {}).close();
            N.recv(t, 1, 0); // ENOTCONN
          }
        }
      } catch (e) {
        count(e);
      } finally {
        for (const fd of opened) N.close(fd);
      }
    }
    for (;;) {
      try {
        N.close(N.accept(held).fd); // drain the queue
      } catch {
        break;
      }
    }
    N.close(held);
    await new Promise((r) => setImmediate(r)); // let libuv run the close callbacks

    for (const code of ['EADDRINUSE', 'EINVAL', 'EINPROGRESS', 'ENOTCONN', 'ENAMETOOLONG', 'EOPNOTSUPP', 'EAGAIN']) {
      expect(codes.get(code) ?? 0, code).toBeGreaterThan(0);
    }
    expect(accepted).toBeGreaterThan(0);
    expect(N.fdCount()).toBe(before);
    expect(readdirSync('/proc/self/fd').length - 1).toBe(before);
  });
});

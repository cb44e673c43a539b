// The kernel's view in each socket resource (`kernel`), read from real loopback sockets: TCP states from
// TCP_INFO and, for what outlives the descriptor or its peer name, from /proc/net/tcp{,6}; RTT and
// congestion window; a listener's accept queue (TCP from TCP_INFO, Unix from sock_diag); UDP receive queue
// and drop counter.
import { createSocket } from 'node:dgram';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { SockEvent } from '../src/events/event-log.js';
import { ManagedSocket } from '../src/sockets/managed-socket.js';
import { startApp, until, type TestApp } from './helpers.js';

let t: TestApp;
beforeEach(async () => {
  t = await startApp();
});
afterEach(async () => {
  await t.close();
});

type Addr = { address: string; port: number };
type Host = '127.0.0.1' | '::1';

const get = async (id: string) => (await t.call('GET', `/v1/sockets/${id}`)).body;
const post = (id: string, op: string, body: object = {}) => t.call('POST', `/v1/sockets/${id}/${op}`, body);
const del = (id: string) => t.call('DELETE', `/v1/sockets/${id}`);

async function create(host: Host = '127.0.0.1', type = 'stream', options?: object): Promise<string> {
  const r = await t.call('POST', '/v1/sockets', { family: host === '::1' ? 'inet6' : 'inet', type, ...(options ? { options } : {}) });
  expect(r.status).toBe(201);
  return r.body.id;
}

async function listening(backlog: number, host: Host = '127.0.0.1'): Promise<{ id: string; local: Addr }> {
  const id = await create(host);
  expect((await post(id, 'bind', { address: host, port: 0 })).status).toBe(200);
  const l = await post(id, 'listen', { backlog });
  expect(l.status).toBe(200);
  return { id, local: l.body.local };
}

async function pair(host: Host = '127.0.0.1'): Promise<{ c: string; a: string }> {
  const l = await listening(4, host);
  const c = await create(host);
  expect((await post(c, 'connect', l.local)).status).toBe(200);
  const a = await post(l.id, 'accept', { timeoutMs: 1000 });
  expect(a.status).toBe(201);
  await del(l.id);
  return { c, a: a.body.id };
}

/** Polls until the socket's kernel view shows `state`; returns the resource. */
async function untilTcpState(id: string, state: string | string[], timeoutMs = 5000) {
  const want = Array.isArray(state) ? state : [state];
  return until(async () => {
    const s = await get(id);
    return want.includes(s.kernel.tcpState) ? s : undefined;
  }, `${id} to reach ${want.join(' or ')}`, timeoutMs);
}

describe('TCP: an established connection', () => {
  it.each(['127.0.0.1', '::1'] as const)('shows ESTABLISHED with RTT, cwnd and queue bytes (%s)', async (host) => {
    const { c, a } = await pair(host);
    await post(c, 'send', { data: 'x'.repeat(1000) });
    await post(a, 'send', { data: 'y'.repeat(100) });
    const got = await until(async () => {
      const s = await get(c);
      return s.kernel.recvQueue === 100 ? s : undefined;
    }, 'the 100 bytes to wait in the kernel');
    expect(got.kernel).toMatchObject({ tcpState: 'ESTABLISHED', tcpStateSource: 'tcp_info', retransmits: 0 });
    expect(got.kernel.rttUs).toBeGreaterThan(0);
    expect(got.kernel.sndCwnd).toBeGreaterThan(0);
    expect(got.kernel.sndMss).toBeGreaterThan(0);
    expect(got.kernel.rtoUs).toBeGreaterThan(0);
    // unread data stays in the kernel, counted in the receiver's queue
    expect((await get(a)).kernel).toMatchObject({ tcpState: 'ESTABLISHED', recvQueue: 1000 });
    // the sender's queue drains once the peer acknowledged
    await until(async () => (await get(c)).kernel.sendQueue === 0, 'the send queue to drain');
    expect((await post(a, 'recv', { maxBytes: 1000, waitAll: true })).body.bytes).toBe(1000);
    expect((await get(a)).kernel.recvQueue).toBe(0);
  });
});

describe('TCP: a listener', () => {
  it('shows LISTEN, its backlog and the accept queue length (also as `pending`)', async () => {
    const l = await listening(3);
    const s = await get(l.id);
    expect(s.kernel).toEqual({ tcpState: 'LISTEN', tcpStateSource: 'tcp_info', acceptQueue: 0, backlog: 3 });
    expect(s.pending).toBe(0);
    for (let i = 0; i < 2; i++) expect((await post(await create(), 'connect', l.local)).status).toBe(200);
    const queued = await until(async () => {
      const r = await get(l.id);
      return r.kernel.acceptQueue === 2 ? r : undefined;
    }, 'two connections in the accept queue');
    expect(queued.pending).toBe(2);
    expect((await post(l.id, 'accept', { timeoutMs: 1000 })).status).toBe(201);
    expect((await get(l.id)).kernel).toMatchObject({ acceptQueue: 1, backlog: 3 });
  });

  it('a client beyond the backlog stays in SYN_SENT (listen(1) queues two)', async () => {
    const l = await listening(1);
    const clients: string[] = [];
    for (let i = 0; i < 4; i++) {
      const c = await create();
      const r = await post(c, 'connect', { ...l.local, timeoutMs: 0 });
      expect([200, 202]).toContain(r.status);
      clients.push(c);
      // let each handshake settle before the next SYN, so the order is the kernel's, not a race
      if (i < 2) await until(async () => (await get(l.id)).kernel.acceptQueue === i + 1, `client ${i} queued`);
    }
    for (const c of clients.slice(0, 2)) await untilTcpState(c, 'ESTABLISHED');
    // the accept queue is full: the listener drops the later SYNs, and their clients keep retrying
    for (const c of clients.slice(2)) {
      const s = await get(c);
      expect(s).toMatchObject({ state: 'connecting', remote: null, kernel: { tcpState: 'SYN_SENT', tcpStateSource: 'tcp_info' } });
    }
    expect((await get(l.id)).kernel).toMatchObject({ acceptQueue: 2, backlog: 1 });
  });
});

describe('Unix: a listener (sock_diag)', () => {
  type Kind = 'stream' | 'seqpacket';
  async function unixListening(type: Kind, path: string, backlog: number): Promise<string> {
    const r = await t.call('POST', '/v1/sockets', { family: 'unix', type });
    expect(r.status).toBe(201);
    expect((await post(r.body.id, 'bind', { path })).status).toBe(200);
    const l = await post(r.body.id, 'listen', { backlog });
    expect(l.status).toBe(200);
    return r.body.id;
  }
  async function unixConnect(type: Kind, path: string): Promise<string> {
    const c = (await t.call('POST', '/v1/sockets', { family: 'unix', type })).body.id as string;
    const r = await post(c, 'connect', { path });
    expect(r.status).toBe(200);
    expect(r.body.state).toBe('connected');
    return c;
  }

  it.each(['stream', 'seqpacket'] as const)(
    'shows the accept queue and backlog (%s): `pending` counts unaccepted connects and drops on accept',
    async (type) => {
      const path = `${type}-q.sock`;
      const l = await unixListening(type, path, 5);
      const s = await get(l);
      expect(s).toMatchObject({ state: 'listening', backlog: 5, pending: 0 });
      // a listener has no byte queues, as for TCP: only the accept queue
      expect(s.kernel).toEqual({ acceptQueue: 0, backlog: 5 });
      // a Unix connect completes at once: the connection waits in the listener's queue
      for (let i = 0; i < 3; i++) await unixConnect(type, path);
      expect(await get(l)).toMatchObject({ pending: 3, kernel: { acceptQueue: 3, backlog: 5 } });
      const a = await post(l, 'accept', { timeoutMs: 1000 });
      expect(a.status).toBe(201);
      expect(await get(l)).toMatchObject({ pending: 2, kernel: { acceptQueue: 2, backlog: 5 } });
      // the accepted socket and the clients are not listeners: no accept queue, their byte queues instead
      const accepted = await get(a.body.id);
      expect(accepted.pending).toBeNull();
      expect(accepted.kernel.acceptQueue).toBeUndefined();
      expect(accepted.kernel.sendQueue).toBe(0);
      for (let i = 0; i < 2; i++) expect((await post(l, 'accept', { timeoutMs: 1000 })).status).toBe(201);
      expect((await get(l)).pending).toBe(0);
      // closed: nothing read from the kernel any more
      expect((await del(l)).body).toMatchObject({ state: 'closed', pending: null, kernel: {} });
    },
  );

  it('a bound socket that is not listening has no accept queue', async () => {
    const r = await t.call('POST', '/v1/sockets', { family: 'unix', type: 'stream' });
    expect((await post(r.body.id, 'bind', { path: 'idle.sock' })).status).toBe(200);
    const s = await get(r.body.id);
    expect(s.pending).toBeNull();
    expect(s.kernel.acceptQueue).toBeUndefined();
    expect(s.kernel.backlog).toBeUndefined();
  });

  it('`pending` events for a Unix listener; other Unix sockets are not sampled', async () => {
    const sampled = new Set<string>();
    const spy = vi.spyOn(ManagedSocket.prototype, 'toResource');
    const seen: SockEvent[] = [];
    const unsubscribe = t.app.events.subscribe((e) => seen.push(e));
    const unobserve = t.app.events.observe(); // the monitor samples for dashboards only
    try {
      const l = await unixListening('stream', 'ev.sock', 4);
      const idle = (await t.call('POST', '/v1/sockets', { family: 'unix', type: 'dgram' })).body.id as string;
      t.app.kernelMonitor.tick(); // the baseline: an empty queue
      const c = await unixConnect('stream', 'ev.sock');
      const pending = () => seen.filter((e) => e.socket === l && e.type === 'pending');
      t.app.kernelMonitor.tick();
      await until(() => pending().some((e) => e.pending === 1), 'pending 1');
      expect(pending().find((e) => e.pending === 1)).toMatchObject({ pending: 1, backlog: 4 });
      const a = (await post(l, 'accept', { timeoutMs: 1000 })).body.id as string;
      spy.mockClear();
      t.app.kernelMonitor.tick();
      await until(() => pending().some((e) => e.pending === 0), 'pending 0');
      for (const r of spy.mock.instances) sampled.add((r as unknown as ManagedSocket).id);
      // the monitor read the listener, and none of the Unix sockets that are not listening
      expect(sampled.has(l)).toBe(true);
      for (const id of [idle, c, a]) expect(sampled.has(id), id).toBe(false);
      // one event per change
      expect(pending().map((e) => e.pending)).toEqual([1, 0]);
    } finally {
      unobserve();
      unsubscribe();
      spy.mockRestore();
    }
  });
});

describe('TCP: closing', () => {
  it.each(['127.0.0.1', '::1'] as const)(
    'the active closer ends in TIME_WAIT (from /proc); the passive side goes through CLOSE_WAIT (%s)',
    async (host) => {
      const { c, a } = await pair(host);
      await post(c, 'send', { data: 'bye' });
      // the active closer closes its descriptor: FIN sent, the connection outlives the fd
      const closed = await del(c);
      expect(closed.body.state).toBe('closed');
      const fin2 = await untilTcpState(c, 'FIN_WAIT2');
      expect(fin2.kernel).toEqual({ tcpState: 'FIN_WAIT2', tcpStateSource: 'proc' });

      // the passive side got the FIN: CLOSE_WAIT until it closes too
      const cw = await untilTcpState(a, 'CLOSE_WAIT');
      expect(cw).toMatchObject({ state: 'connected', kernel: { tcpStateSource: 'tcp_info' } });
      expect((await post(a, 'recv', { timeoutMs: 1000 })).body).toMatchObject({ data: 'bye' });
      expect((await post(a, 'recv', { timeoutMs: 1000 })).body).toMatchObject({ bytes: 0, eof: true });
      expect((await get(a)).kernel.tcpState).toBe('CLOSE_WAIT');
      const passive = await del(a);
      // LAST_ACK lasts one loopback round trip: either may be read
      expect(['LAST_ACK', 'CLOSED']).toContain(passive.body.kernel.tcpState);
      expect(passive.body.kernel.tcpStateSource).toBe('proc');
      await untilTcpState(a, 'CLOSED');

      const tw = await untilTcpState(c, 'TIME_WAIT');
      expect(tw).toMatchObject({ state: 'closed', remote: { address: host }, kernel: { tcpState: 'TIME_WAIT', tcpStateSource: 'proc' } });
    },
  );

  it('TIME_WAIT shows while the descriptor is still open (TCP_INFO says CLOSE, getpeername fails)', async () => {
    const { c, a } = await pair();
    await post(c, 'shutdown', { how: 'SHUT_WR' });
    expect((await post(a, 'recv', { timeoutMs: 1000 })).body.eof).toBe(true);
    await post(a, 'shutdown', { how: 'SHUT_WR' });
    expect((await post(c, 'recv', { timeoutMs: 1000 })).body.eof).toBe(true);
    const tw = await untilTcpState(c, 'TIME_WAIT');
    // the descriptor is open and the user never closed it: state stays connected, the peer name is gone
    expect(tw).toMatchObject({ state: 'connected', remote: null, kernel: { tcpStateSource: 'proc' } });
    // the passive side's connection is gone: its open descriptor reads CLOSE from TCP_INFO
    expect((await untilTcpState(a, 'CLOSE')).kernel.tcpStateSource).toBe('tcp_info');
    // closing the descriptor leaves the TIME_WAIT in place
    expect((await del(c)).body.kernel).toEqual({ tcpState: 'TIME_WAIT', tcpStateSource: 'proc' });
  });

  it('a half-closed connection: FIN_WAIT2 on the closer, CLOSE_WAIT on the other side, data still flows back', async () => {
    const { c, a } = await pair();
    await post(c, 'shutdown', { how: 'SHUT_WR' });
    const fw = await untilTcpState(c, 'FIN_WAIT2');
    expect(fw).toMatchObject({ state: 'connected', shutdown: { read: false, write: true }, kernel: { tcpStateSource: 'tcp_info' } });
    expect((await untilTcpState(a, 'CLOSE_WAIT')).state).toBe('connected');
    await post(a, 'send', { data: 'still here' });
    expect((await post(c, 'recv', { timeoutMs: 1000 })).body.data).toBe('still here');
    expect((await get(c)).kernel.tcpState).toBe('FIN_WAIT2');
  });

  it('a reset connection reads CLOSE, and nothing lingers in /proc', async () => {
    const { c, a } = await pair();
    expect((await t.call('DELETE', `/v1/sockets/${c}?reset=true`)).body.kernel).toEqual({ tcpState: 'CLOSED', tcpStateSource: 'proc' });
    const s = await untilTcpState(a, 'CLOSE');
    expect(s.kernel.tcpStateSource).toBe('tcp_info');
  });
});

describe('UDP', () => {
  it.each(['127.0.0.1', '::1'] as const)('shows the receive queue after a datagram arrives, and the kernel drop counter (%s)', async (host) => {
    // the smallest receive buffer the kernel allows: a few loopback datagrams fill it
    const id = await create(host, 'dgram', { SO_RCVBUF: 1 });
    const b = await post(id, 'bind', { address: host, port: 0 });
    expect(b.body.kernel).toEqual({ recvQueue: 0, sendQueue: 0, drops: 0 });
    const port = b.body.local.port as number;
    // a second socket on the same port (SO_REUSEADDR on both): its counter is its own
    const sibling = await create(host, 'dgram', { SO_REUSEADDR: true });
    await t.call('PATCH', `/v1/sockets/${id}/options`, { SO_REUSEADDR: true });
    expect((await post(sibling, 'bind', { address: host, port })).status).toBe(200);

    const tx = createSocket(host === '::1' ? 'udp6' : 'udp4');
    const send = (size: number, fill: number) =>
      new Promise<void>((resolve, reject) => tx.send(Buffer.alloc(size, fill), port, host, (e) => (e ? reject(e) : resolve())));
    try {
      await new Promise<void>((resolve) => tx.bind(0, host, resolve));
      // with SO_REUSEADDR (not REUSEPORT), the last socket bound gets the datagrams: connect the
      // receiver to the sender instead, so that the 4-tuple match sends everything to it
      await post(id, 'connect', { address: host, port: tx.address().port });
      await send(200, 1);
      // SIOCINQ on UDP: the size of the next datagram
      const one = await until(async () => {
        const s = await get(id);
        return s.kernel.recvQueue === 200 ? s : undefined;
      }, 'the datagram to arrive');
      expect(one.kernel.drops).toBe(0);

      for (let i = 0; i < 200; i++) await send(1000, 2);
      const full = await until(async () => {
        const s = await get(id);
        return s.kernel.drops > 0 ? s : undefined;
      }, 'the kernel to drop datagrams');
      const drops = full.kernel.drops as number;
      // what the kernel kept, plus what it dropped, is what was sent
      let kept = 0;
      for (;;) {
        const r = await post(id, 'recv', { timeoutMs: 0 });
        if (r.status !== 200) {
          expect(r.body.code).toBe('EAGAIN');
          break;
        }
        kept++;
      }
      expect(kept).toBeGreaterThan(0);
      expect(kept + drops).toBe(201);
      expect((await get(id)).kernel).toMatchObject({ recvQueue: 0, drops });
      expect((await get(sibling)).kernel).toMatchObject({ recvQueue: 0, drops: 0 });
    } finally {
      tx.close();
    }
  });

  it('an unbound UDP socket has no drop counter yet (the kernel has not hashed it)', async () => {
    const id = await create('127.0.0.1', 'dgram');
    expect((await get(id)).kernel).toEqual({ recvQueue: 0, sendQueue: 0 });
  });
});

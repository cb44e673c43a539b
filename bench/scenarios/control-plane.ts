import { alternate, type Ctx } from '../lib/context.js';
import { RawHttp, rate, warmUp } from '../lib/raw-http.js';
import { row, type ScenarioResult } from '../lib/report.js';
import type { IpcChild } from '../lib/ipc-child.js';
import { startBareFastify, TOKEN, type Service } from '../lib/service.js';
import { summarize } from '../lib/stats.js';

export const WORKERS = 4;
/** HTTP requests in one lab cycle (see labCycle). */
const CYCLE_REQUESTS = 11;

/**
 * The full lab cycle: create a listener, bind, listen, create a client, connect, accept, send, recv,
 * close all three. The client closes first with `reset=true` (SO_LINGER 0) so that tens of thousands
 * of cycles leave no TIME_WAIT behind to exhaust the ephemeral ports.
 */
export async function labCycle(h: RawHttp): Promise<void> {
  const l = await h.json('POST', '/v1/sockets', { family: 'inet', type: 'stream', label: 'bench-cycle' });
  const bound = await h.json('POST', `/v1/sockets/${l.id}/bind`, { address: '127.0.0.1', port: 0 });
  await h.json('POST', `/v1/sockets/${l.id}/listen`, {});
  const c = await h.json('POST', '/v1/sockets', { family: 'inet', type: 'stream', label: 'bench-cycle' });
  await h.json('POST', `/v1/sockets/${c.id}/connect`, { address: '127.0.0.1', port: bound.local.port });
  const a = await h.json('POST', `/v1/sockets/${l.id}/accept`, {});
  await h.json('POST', `/v1/sockets/${c.id}/send`, { data: 'ping' });
  await h.json('POST', `/v1/sockets/${a.id}/recv`, { maxBytes: 4 });
  await h.json('DELETE', `/v1/sockets/${c.id}?reset=true`);
  await h.json('DELETE', `/v1/sockets/${a.id}`);
  await h.json('DELETE', `/v1/sockets/${l.id}`);
}

type Op = (h: RawHttp, worker: number) => Promise<unknown>;

/** How many bytes the `send` peer's kernel queues before it wakes the reader (SO_RCVLOWAT). */
export const PEER_WAKE_BYTES = 4096;

/**
 * Per worker, sockctl TCP sockets connected to the peer, so that no call ever waits: one for `send` whose
 * peer is woken once per PEER_WAKE_BYTES (a 1-byte send then wakes nobody, as a `recv` of a full socket
 * wakes nobody: its peer writes 64 KiB per wake-up), one for `send` whose peer is woken by every segment
 * (the reader that sleeps in epoll), one for `recv` (the peer keeps it full); the calls, and their clean-up.
 */
export async function callTargets(
  service: Service,
  peer: IpcChild,
): Promise<{ ops: { send: Op; sendWaking: Op; recv: Op; cycle: Op }; cleanup: () => Promise<void> }> {
  const { port } = await peer.call<{ port: number }>('listen');
  const pairs: { id: string; conn: number }[] = [];
  for (let i = 0; i < 3 * WORKERS; i++) {
    const s = await service.call<{ id: string }>('POST', '/v1/sockets', { family: 'inet', type: 'stream', label: 'bench-cp' });
    await service.call('POST', `/v1/sockets/${s.id}/connect`, { address: '127.0.0.1', port });
    const { conn } = await peer.call<{ conn: number }>('accept');
    pairs.push({ id: s.id, conn });
  }
  const senders = pairs.slice(0, WORKERS);
  const wakingSenders = pairs.slice(WORKERS, 2 * WORKERS);
  const receivers = pairs.slice(2 * WORKERS);
  for (const s of senders) {
    const { bytes } = await peer.call<{ bytes: number }>('wakeEvery', { conn: s.conn, bytes: PEER_WAKE_BYTES });
    if (bytes !== PEER_WAKE_BYTES) throw new Error(`the peer's SO_RCVLOWAT is ${bytes}, not ${PEER_WAKE_BYTES}`);
  }
  for (const r of receivers) await peer.call('feed', { conn: r.conn });
  return {
    ops: {
      send: (h, i) => h.json('POST', `/v1/sockets/${senders[i]!.id}/send`, { data: 'x' }),
      sendWaking: (h, i) => h.json('POST', `/v1/sockets/${wakingSenders[i]!.id}/send`, { data: 'x' }),
      recv: (h, i) => h.json('POST', `/v1/sockets/${receivers[i]!.id}/recv`, { maxBytes: 64 }),
      cycle: labCycle,
    },
    async cleanup() {
      for (const p of pairs) {
        await peer.call('close', { conn: p.conn });
        await service.close(p.id);
      }
    },
  };
}

/**
 * How long each path warms up (warmUp(): until its rate holds). After a fixed 300 ms a path, two full runs'
 * first send rounds of 2 s came 10-16% under the others' median (after 1 s, 3-6%), and the bare route's first
 * quick round 27-51% under its others in three runs out of three. At least 800 ms: a fresh path's first slices
 * of 200 ms can agree at a tenth of its speed (send: 4,026/s and 3,356/s after 400 ms).
 */
export function warmUpBounds(quick: boolean): { minMs: number; maxMs: number } {
  return quick ? { minMs: 800, maxMs: 1200 } : { minMs: 1000, maxMs: 4000 };
}

/**
 * Scenario 4: single calls per second vs a bare fastify route with the same body validation (goal >= 0.5x).
 * The goal rows measure the servers' own cost: a busy-polling client (rate()'s `poll`) and a `send` peer
 * woken per PEER_WAKE_BYTES, so that neither server pays a cross-vCPU wake-up per call. The rows after
 * them measure the same calls with a client that sleeps between answers and a peer woken by every send.
 */
export async function controlPlane(ctx: Ctx): Promise<ScenarioResult[]> {
  const { service, peer } = ctx;
  const [rounds, ms] = ctx.quick ? [3, 300] : [5, 2000];
  const maxOps = 1_000_000;
  ctx.log(`control plane: ${WORKERS} keep-alive connections, ${rounds} rounds of ${ms} ms per measure`);
  const bare = await startBareFastify();
  const sc = await Promise.all(Array.from({ length: WORKERS }, () => RawHttp.open(service.port, TOKEN)));
  const bc = await Promise.all(Array.from({ length: WORKERS }, () => RawHttp.open(bare.port)));
  const { ops, cleanup } = await callTargets(service, peer);
  const poll = { poll: true };
  const sleeping = { poll: false };
  try {
    const { send, sendWaking, recv } = ops;
    const bareSend = (h: RawHttp) => h.json('POST', '/v1/sockets/abc/send', { data: 'x' });
    const warm = warmUpBounds(ctx.quick);
    const warmed: string[] = [];
    const warmPath = async (name: string, conns: RawHttp[], op: Op, opts = poll) => {
      const w = await warmUp(conns, op, { ...opts, ...warm });
      warmed.push(`${name} ${Math.round(w.ms)} ms (${Math.round(w.opsPerSec)}/s)`);
    };
    await warmPath('send', sc, send);
    // the same path as `send` (only the peer differs), for rows without a goal: a quick run warms it 300 ms
    if (ctx.quick) await rate(sc, 300, maxOps, sendWaking, sleeping);
    else await warmPath('sendWaking', sc, sendWaking, sleeping);
    await warmPath('recv', sc, recv);
    await warmPath('bare', bc, bareSend);
    const keys = ['send', 'recv', 'sendSleeping', 'recvSleeping', 'bare', 'bareSleeping', 'cycle', 'bareForCycles'] as const;
    const m = Object.fromEntries(keys.map((k) => [k, [] as number[]])) as Record<(typeof keys)[number], number[]>;
    const measure = async (key: keyof typeof m, conns: RawHttp[], op: Op, opts = poll) => m[key].push((await rate(conns, ms, maxOps, op, opts)).opsPerSec);
    await alternate(
      rounds,
      async () => {
        await measure('send', sc, send);
        await measure('recv', sc, recv);
        await measure('sendSleeping', sc, sendWaking, sleeping);
        await measure('recvSleeping', sc, recv, sleeping);
      },
      async () => {
        await measure('bare', bc, bareSend);
        await measure('bareSleeping', bc, bareSend, sleeping);
      },
    );
    // The lab cycles come after, against the bare route again: the next 300 ms of sends after a lab cycle's
    // measure ran at 18,000/s against 32,000 before and after, and in a quick run's first round at 12,000: a
    // transient that fell on whatever measure followed the lab cycle.
    await warmPath('cycle', sc, labCycle);
    ctx.log(`  warm-up: ${warmed.join(', ')}`);
    await alternate(
      rounds,
      () => measure('cycle', sc, labCycle),
      () => measure('bareForCycles', bc, bareSend),
    );
    const b = { name: 'bare fastify route', summary: summarize(m.bare) };
    const bs = { name: 'bare fastify route, sleeping client', summary: summarize(m.bareSleeping) };
    const perCycle = { name: `bare fastify route / ${CYCLE_REQUESTS}`, summary: summarize(m.bareForCycles.map((x) => x / CYCLE_REQUESTS)) };
    ctx.log(`  ${Object.entries(m).map(([k, v]) => `${k} ${v.map(Math.round).join(' ')}`).join('; ')} /s`);
    return [
      row('4. Control plane', 'send calls', 'calls/s', summarize(m.send), b, true, { min: 0.5 }),
      row('4. Control plane', 'recv calls', 'calls/s', summarize(m.recv), b, true, { min: 0.5 }),
      row('4. Control plane', `lab cycles (${CYCLE_REQUESTS} calls each)`, 'cycles/s', summarize(m.cycle), perCycle, true),
      row('4. Control plane', 'send calls, sleeping client, peer woken per send', 'calls/s', summarize(m.sendSleeping), bs, true),
      row('4. Control plane', 'recv calls, sleeping client', 'calls/s', summarize(m.recvSleeping), bs, true),
    ];
  } finally {
    for (const h of [...sc, ...bc]) h.close();
    await cleanup();
    await bare.proc.stop();
  }
}

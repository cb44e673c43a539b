import { alternate, type Ctx } from '../lib/context.js';
import { RawHttp, rate } from '../lib/raw-http.js';
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

/**
 * One sockctl TCP socket per worker connected to the peer for `send` (the peer reads everything) and one
 * for `recv` (the peer keeps it full), so that neither call ever waits; the calls, and their clean-up.
 */
export async function callTargets(service: Service, peer: IpcChild): Promise<{ ops: { send: Op; recv: Op; cycle: Op }; cleanup: () => Promise<void> }> {
  const { port } = await peer.call<{ port: number }>('listen');
  const pairs: { id: string; conn: number }[] = [];
  for (let i = 0; i < 2 * WORKERS; i++) {
    const s = await service.call<{ id: string }>('POST', '/v1/sockets', { family: 'inet', type: 'stream', label: 'bench-cp' });
    await service.call('POST', `/v1/sockets/${s.id}/connect`, { address: '127.0.0.1', port });
    const { conn } = await peer.call<{ conn: number }>('accept');
    pairs.push({ id: s.id, conn });
  }
  const senders = pairs.slice(0, WORKERS);
  const receivers = pairs.slice(WORKERS);
  for (const r of receivers) await peer.call('feed', { conn: r.conn });
  return {
    ops: {
      send: (h, i) => h.json('POST', `/v1/sockets/${senders[i]!.id}/send`, { data: 'x' }),
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

/** Scenario 4: single calls per second vs a bare fastify route with the same body validation (goal >= 0.5x). */
export async function controlPlane(ctx: Ctx): Promise<ScenarioResult[]> {
  const { service, peer } = ctx;
  const [rounds, ms] = ctx.quick ? [3, 300] : [5, 2000];
  const maxOps = 1_000_000;
  ctx.log(`control plane: ${WORKERS} keep-alive connections, ${rounds} rounds of ${ms} ms per measure`);
  const bare = await startBareFastify();
  const sc = await Promise.all(Array.from({ length: WORKERS }, () => RawHttp.open(service.port, TOKEN)));
  const bc = await Promise.all(Array.from({ length: WORKERS }, () => RawHttp.open(bare.port)));
  const { ops, cleanup } = await callTargets(service, peer);
  try {
    const { send, recv } = ops;
    const bareSend = (h: RawHttp) => h.json('POST', '/v1/sockets/abc/send', { data: 'x' });
    // warm-up (JIT) of every path
    await rate(sc, 300, maxOps, send);
    await rate(sc, 300, maxOps, recv);
    await rate(sc, 300, maxOps, labCycle);
    await rate(bc, 300, maxOps, bareSend);
    const sends: number[] = [];
    const recvs: number[] = [];
    const cycles: number[] = [];
    const bares: number[] = [];
    await alternate(
      rounds,
      async () => {
        sends.push((await rate(sc, ms, maxOps, send)).opsPerSec);
        recvs.push((await rate(sc, ms, maxOps, recv)).opsPerSec);
        cycles.push((await rate(sc, ms, maxOps, labCycle)).opsPerSec);
      },
      async () => {
        bares.push((await rate(bc, ms, maxOps, bareSend)).opsPerSec);
      },
    );
    const b = { name: 'bare fastify route', summary: summarize(bares) };
    const perCycle = { name: `bare fastify route / ${CYCLE_REQUESTS}`, summary: summarize(bares.map((x) => x / CYCLE_REQUESTS)) };
    ctx.log(`  send ${sends.map(Math.round).join(' ')}; recv ${recvs.map(Math.round).join(' ')}; cycle ${cycles.map(Math.round).join(' ')}; bare ${bares.map(Math.round).join(' ')} /s`);
    return [
      row('4. Control plane', 'send calls', 'calls/s', summarize(sends), b, true, { min: 0.5 }),
      row('4. Control plane', 'recv calls', 'calls/s', summarize(recvs), b, true, { min: 0.5 }),
      row('4. Control plane', `lab cycles (${CYCLE_REQUESTS} calls each)`, 'cycles/s', summarize(cycles), perCycle, true),
    ];
  } finally {
    for (const h of [...sc, ...bc]) h.close();
    await cleanup();
    await bare.proc.stop();
  }
}

import type { WebSocket } from 'ws';
import { nowMs } from '../lib/clock.js';
import { alternate, type Ctx } from '../lib/context.js';
import { IpcChild } from '../lib/ipc-child.js';
import { cpuSeconds, sleep } from '../lib/procs.js';
import { row, type ScenarioResult } from '../lib/report.js';
import { median, summarize } from '../lib/stats.js';
import { closeWs, openWs } from '../lib/ws-client.js';

const OBSERVERS = 100;
const RATE = 10_000;
const SIZE = 64;

interface ObserverStats {
  delivered: number;
  gapEvents: number;
  missed: number;
  unaccounted: number;
  lastMs: number;
  closed: boolean;
}

interface Round {
  /** Events produced per second, as the TCP peer received their bytes. */
  producerRate: number;
  produced: number;
  cpu: number;
  delivered: number;
  deliveredRate: number;
  keptUp: number;
  gapped: number;
  lossy: number;
  closed: number;
}

/**
 * Sends `count` binary frames of SIZE bytes at RATE per second through the consumer stream (open loop:
 * the offered load does not depend on how fast the service goes): each one is one send(2) in the service
 * and one `sent` event for the observers.
 */
async function produce(ws: WebSocket, count: number): Promise<void> {
  const frame = Buffer.alloc(SIZE, 0x70);
  const start = nowMs();
  let sent = 0;
  while (sent < count) {
    const due = Math.min(count, Math.floor(((nowMs() - start) * RATE) / 1000) + 1);
    while (sent < due) {
      ws.send(frame, { binary: true });
      sent++;
    }
    await sleep(1);
  }
}

/** Waits until the process's CPU time stops growing (the service worked through its backlog), at most 20 s. */
async function idle(pid: number): Promise<void> {
  const end = nowMs() + 20_000;
  let last = cpuSeconds(pid);
  while (nowMs() < end) {
    await sleep(250);
    const now = cpuSeconds(pid);
    if (now - last < 0.02) return;
    last = now;
  }
}

/**
 * One round: RATE events/s offered for `seconds`; measured over a window that ends when the peer got
 * every event, or at twice the production time (a slowed producer leaves a backlog, which is dropped).
 */
async function round(ctx: Ctx, observers: IpcChild | null, seconds: number): Promise<Round> {
  const { service, peer } = ctx;
  const count = Math.round(RATE * seconds);
  const l = await service.listener();
  const { conn } = await peer.call<{ conn: number }>('connect', { port: l.local!.port });
  const a = await service.accept(l.id);
  const ws = await openWs(service.streamUrl(a.id));
  try {
    if (observers) await observers.call('open', { url: service.eventsUrl(), n: OBSERVERS });
    await sleep(200);
    const cpu0 = cpuSeconds(service.pid);
    const t0 = nowMs();
    await produce(ws, count);
    const windowEnd = t0 + 2 * seconds * 1000;
    let got = await peer.call<{ bytes: number; lastMs: number }>('count', { conn });
    while (got.bytes < count * SIZE && nowMs() < windowEnd) {
      await sleep(20);
      got = await peer.call<{ bytes: number; lastMs: number }>('count', { conn });
    }
    const cpu = cpuSeconds(service.pid) - cpu0;
    const elapsed = ((got.bytes >= count * SIZE ? got.lastMs : nowMs()) - t0) / 1000;
    const stats = observers ? (await observers.call<{ observers: ObserverStats[] }>('stats')).observers : [];
    const produced = got.bytes / SIZE;
    const delivered = stats.reduce((n, s) => n + s.delivered, 0);
    return {
      producerRate: produced / elapsed,
      produced,
      cpu,
      delivered,
      deliveredRate: delivered / elapsed,
      keptUp: stats.filter((s) => !s.closed && s.missed === 0 && s.unaccounted === 0).length,
      gapped: stats.filter((s) => !s.closed && s.missed > 0 && s.unaccounted === 0).length,
      lossy: stats.filter((s) => s.unaccounted > 0).length,
      closed: stats.filter((s) => s.closed).length,
    };
  } finally {
    if (observers) await observers.call('close');
    await closeWs(ws);
    await peer.call('close', { conn });
    await service.close(a.id);
    await service.close(l.id);
    await idle(service.pid);
  }
}

/**
 * Scenario 6: 100 observers on /v1/events while a consumer stream produces 10,000 `sent` events per
 * second. Goal: every observer keeps up or gets `gap` events, and the producer keeps its rate (here:
 * >= 0.95x its rate without observers).
 */
export async function fanout(ctx: Ctx): Promise<ScenarioResult[]> {
  const [rounds, seconds] = ctx.quick ? [2, 1] : [3, 4];
  ctx.log(`fan-out: ${OBSERVERS} observers, ${RATE} events/s for ${seconds} s, ${rounds} rounds with and without`);
  const observers = await IpcChild.start('observers', 'bench/lib/observers.ts');
  try {
    await round(ctx, null, 0.3); // warm-up
    const r = await alternate(rounds, () => round(ctx, observers, seconds), () => round(ctx, null, seconds));
    for (const x of r.a)
      ctx.log(
        `  with observers: producer ${Math.round(x.producerRate)}/s, delivered ${Math.round(x.deliveredRate)}/s; observers kept up ${x.keptUp}, got gaps ${x.gapped}, lost events unannounced ${x.lossy}, closed ${x.closed}`,
      );
    ctx.log(`  without: producer ${r.b.map((x) => Math.round(x.producerRate)).join(' ')}/s`);
    // CPU per produced event without observers; what a round with observers spent beyond that, per delivered event
    const perProduced = median(r.b.map((x) => x.cpu / x.produced));
    const name = `6. Fan-out (${OBSERVERS} observers)`;
    const offered = r.a.map((x) => x.producerRate * OBSERVERS);
    return [
      row(name, 'producer rate', 'events/s', summarize(r.a.map((x) => x.producerRate)), { name: 'same, no observers', summary: summarize(r.b.map((x) => x.producerRate)) }, true, { min: 0.95 }),
      row(name, 'events delivered to observers', 'events/s', summarize(r.a.map((x) => x.deliveredRate)), { name: `offered (${OBSERVERS} × produced)`, summary: summarize(offered) }, true),
      row(name, 'service CPU per delivered event (beyond the no-observer run)', 'µs', summarize(r.a.map((x) => ((x.cpu - x.produced * perProduced) / Math.max(1, x.delivered)) * 1e6)), null, false),
      row(name, 'observers that kept up or got gap events', 'observers', summarize(r.a.map((x) => x.keptUp + x.gapped)), { name: 'all observers', summary: summarize(r.a.map(() => OBSERVERS)) }, true, { min: 1 }),
    ];
  } finally {
    await observers.stop();
  }
}

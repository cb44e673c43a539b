import type { WebSocket } from 'ws';
import { nowMs } from '../lib/clock.js';
import { alternate, type Ctx } from '../lib/context.js';
import { IpcChild } from '../lib/ipc-child.js';
import { cpuSeconds, sleep, within } from '../lib/procs.js';
import { RawHttp } from '../lib/raw-http.js';
import { row, type ScenarioResult } from '../lib/report.js';
import { median, summarize } from '../lib/stats.js';
import { closeWs, openWs } from '../lib/ws-client.js';

const OBSERVERS = 100;
const RATE = 10_000;
const SIZE = 64;
/** Events the producer may have in flight (sent, not yet at the peer): 100 ms at RATE. */
const WINDOW = RATE / 10;

interface ObserverStats {
  delivered: number;
  gapEvents: number;
  missed: number;
  unaccounted: number;
  lastMs: number;
  closed: boolean;
}

interface Round {
  /** Events produced per second: the service's sends, until the last datagram reached the peer. */
  producerRate: number;
  produced: number;
  cpu: number;
  delivered: number;
  deliveredRate: number;
  keptUp: number;
  gapped: number;
  lossy: number;
  closed: number;
  /** The slowest GET /v1/health during the window (ms): how long the service's event loop was blocked. */
  healthMax: number;
}

/** Polls GET /v1/health every 20 ms until stopped; the latencies show the service's event-loop stalls. */
function healthProbe(port: number): { stop: () => Promise<number[]> } {
  let running = true;
  const lat: number[] = [];
  const done = (async () => {
    const h = await RawHttp.open(port);
    try {
      while (running) {
        const t = performance.now();
        await within(30_000, 'health probe', h.request('GET', '/v1/health'));
        lat.push(performance.now() - t);
        await sleep(20);
      }
    } finally {
      h.close();
    }
  })();
  return {
    async stop() {
      running = false;
      await done;
      return lat;
    },
  };
}

/**
 * Sends binary frames of SIZE bytes through the consumer stream of a UDP socket for `seconds`, at RATE per
 * second but with at most WINDOW of them not yet arrived at the peer (a producer that keeps 100 ms of lead,
 * as one respecting backpressure would): each frame is one datagram, so one send(2) in the service and one
 * `sent` event for the observers. (A TCP socket's consumer sends the frames of one event-loop turn with one
 * sendmsg, one event for about ten frames at this rate.) Returns how many were sent.
 */
async function produce(ctx: Ctx, ws: WebSocket, conn: number, seconds: number): Promise<number> {
  const frame = Buffer.alloc(SIZE, 0x70);
  const start = nowMs();
  const end = start + seconds * 1000;
  let sent = 0;
  while (nowMs() < end) {
    const arrived = (await ctx.peer.call<{ bytes: number }>('count', { conn })).bytes / SIZE;
    const due = Math.min(Math.floor(((nowMs() - start) * RATE) / 1000) + 1, arrived + WINDOW);
    while (sent < due) {
      ws.send(frame, { binary: true });
      sent++;
    }
    await sleep(1);
  }
  return sent;
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
 * Waits until the peer has `bytes`, or its count stopped growing for 1 s (a datagram lost on loopback: the
 * round then counts what arrived); at most `timeoutMs`.
 */
async function arrived(ctx: Ctx, conn: number, bytes: number, timeoutMs: number): Promise<{ bytes: number; lastMs: number }> {
  const end = nowMs() + timeoutMs;
  let last = { bytes: -1, lastMs: 0 };
  let since = nowMs();
  for (;;) {
    const c = await ctx.peer.call<{ bytes: number; lastMs: number }>('count', { conn });
    if (c.bytes >= bytes) return c;
    if (c.bytes !== last.bytes) [last, since] = [c, nowMs()];
    else if (nowMs() - since > 1000) return c;
    if (nowMs() > end) throw new Error(`fan-out: the peer got ${c.bytes} of ${bytes} bytes in ${timeoutMs} ms`);
    await sleep(20);
  }
}

/** One round: events produced for `seconds`, measured until the last of them reached the peer. */
export async function round(ctx: Ctx, observers: IpcChild | null, seconds: number): Promise<Round> {
  const { service, peer } = ctx;
  const { conn, port } = await peer.call<{ conn: number; port: number }>('udp');
  const a = await service.call<{ id: string }>('POST', '/v1/sockets', { family: 'inet', type: 'dgram', label: 'bench-fanout' });
  await service.call('POST', `/v1/sockets/${a.id}/connect`, { address: '127.0.0.1', port });
  const ws = await openWs(service.streamUrl(a.id));
  try {
    if (observers) await observers.call('open', { url: service.eventsUrl(), n: OBSERVERS });
    await sleep(200);
    const probe = healthProbe(service.port);
    const cpu0 = cpuSeconds(service.pid);
    const t0 = nowMs();
    const sent = await produce(ctx, ws, conn, seconds);
    const got = await arrived(ctx, conn, sent * SIZE, 30_000);
    // the events produced are the service's sends (one `sent` event each), whether or not the peer, starved
    // of CPU by the observers' clients, read every datagram before its receive buffer overflowed
    const { stats: out } = await service.call<{ stats: { messagesSent: number } }>('GET', `/v1/sockets/${a.id}`);
    if (got.bytes < sent * SIZE) ctx.log(`  fan-out: the peer dropped ${sent - got.bytes / SIZE} of ${sent} datagrams (a full receive buffer)`);
    const elapsed = (got.lastMs - t0) / 1000;
    const cpu = cpuSeconds(service.pid) - cpu0;
    // what the service wrote to the observers by then, once they have read it (quiet for 200 ms, at most 5 s)
    let stats: ObserverStats[] = [];
    for (const limit = nowMs() + 5000; observers; ) {
      stats = (await observers.call<{ observers: ObserverStats[] }>('stats')).observers;
      if (nowMs() - Math.max(...stats.map((x) => x.lastMs)) > 200 || nowMs() > limit) break;
      await sleep(50);
    }
    const health = await probe.stop();
    const produced = out.messagesSent;
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
      healthMax: Math.max(...health),
    };
  } finally {
    if (observers) await observers.call('close');
    await closeWs(ws);
    await peer.call('close', { conn });
    await service.close(a.id);
    await idle(service.pid);
  }
}

/**
 * Scenario 6: 100 observers on /v1/events while a consumer stream produces 10,000 `sent` events per
 * second. Goal: every observer keeps up or gets `gap` events, and the producer keeps its rate (here:
 * >= 0.95x its rate without observers).
 */
export async function fanout(ctx: Ctx): Promise<ScenarioResult[]> {
  const [rounds, seconds] = ctx.quick ? [2, 0.5] : [3, 4];
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
    ctx.log(`  slowest /v1/health: with ${r.a.map((x) => x.healthMax.toFixed(0)).join(' ')} ms, without ${r.b.map((x) => x.healthMax.toFixed(0)).join(' ')} ms`);
    // CPU per produced event without observers; what a round with observers spent beyond that, per delivered event
    const perProduced = median(r.b.map((x) => x.cpu / x.produced));
    const name = `6. Fan-out (${OBSERVERS} observers)`;
    const offered = r.a.map((x) => x.producerRate * OBSERVERS);
    return [
      row(name, 'producer rate', 'events/s', summarize(r.a.map((x) => x.producerRate)), { name: 'same, no observers', summary: summarize(r.b.map((x) => x.producerRate)) }, true, { min: 0.95 }),
      row(name, 'events delivered to observers', 'events/s', summarize(r.a.map((x) => x.deliveredRate)), { name: `offered (${OBSERVERS} × produced)`, summary: summarize(offered) }, true),
      row(name, 'service CPU per delivered event (beyond the no-observer run)', 'µs', summarize(r.a.map((x) => ((x.cpu - x.produced * perProduced) / Math.max(1, x.delivered)) * 1e6)), null, false),
      row(name, 'slowest GET /v1/health during the round', 'ms', summarize(r.a.map((x) => x.healthMax)), { name: 'same, no observers', summary: summarize(r.b.map((x) => x.healthMax)) }, false),
      row(name, 'observers that kept up or got gap events', 'observers', summarize(r.a.map((x) => x.keptUp + x.gapped)), { name: 'all observers', summary: summarize(r.a.map(() => OBSERVERS)) }, true, { min: 1 }),
    ];
  } finally {
    await observers.stop();
  }
}

import type { WebSocket } from 'ws';
import { nowMs } from '../lib/clock.js';
import { alternate, type Ctx } from '../lib/context.js';
import { row, type ScenarioResult } from '../lib/report.js';
import { quantile, summarize } from '../lib/stats.js';
import { closeWs, openWs } from '../lib/ws-client.js';
import { within } from '../lib/procs.js';

const SIZE = 64;
const RATE = 1000;

interface Latency {
  p50: number;
  p99: number;
}

/**
 * Collects `count` records of SIZE bytes from a binary stream (they may be split or merged across
 * frames); each record's first 8 bytes are its send time (f64, shared monotonic clock).
 */
function collect(ws: WebSocket, count: number, timeoutMs: number): Promise<number[]> {
  const lat: number[] = [];
  let carry = Buffer.alloc(0);
  return within(
    timeoutMs,
    `latency: ${count} messages`,
    new Promise<number[]>((resolve) => {
      ws.on('message', (data: Buffer, isBinary: boolean) => {
        if (!isBinary) return;
        const t = nowMs();
        let buf = carry.length ? Buffer.concat([carry, data]) : data;
        while (buf.length >= SIZE) {
          lat.push(t - buf.readDoubleLE(0));
          buf = buf.subarray(SIZE);
        }
        carry = Buffer.from(buf);
        if (lat.length >= count) resolve(lat);
      });
    }),
  ).finally(() => ws.removeAllListeners('message'));
}

async function run(ctx: Ctx, ws: WebSocket, conn: number, seconds: number): Promise<Latency> {
  const count = Math.round(RATE * seconds);
  const got = collect(ws, count, seconds * 1000 + 15_000);
  await ctx.peer.call('ticks', { conn, rate: RATE, count, size: SIZE }, seconds * 1000 + 15_000);
  const lat = await got;
  return { p50: quantile(lat, 0.5), p99: quantile(lat, 0.99) };
}

async function viaSockctl(ctx: Ctx, seconds: number): Promise<Latency> {
  const { service, peer } = ctx;
  const l = await service.listener();
  const { conn } = await peer.call('connect', { port: l.local!.port });
  const a = await service.accept(l.id);
  const ws = await openWs(service.streamUrl(a.id));
  try {
    return await run(ctx, ws, conn, seconds);
  } finally {
    await closeWs(ws);
    await peer.call('close', { conn });
    await service.close(a.id);
    await service.close(l.id);
  }
}

async function viaRelay(ctx: Ctx, seconds: number): Promise<Latency> {
  const { relay, peer } = ctx;
  const { port } = await peer.call('listen');
  const ws = await openWs(`ws://127.0.0.1:${relay.port}/?port=${port}`);
  const { conn } = await peer.call('accept');
  try {
    return await run(ctx, ws, conn, seconds);
  } finally {
    await closeWs(ws);
    await peer.call('close', { conn });
  }
}

/** Scenario 3: 64-byte messages at 1,000/s, TCP peer → WebSocket client; p50 and p99 <= 1.0x the relay. */
export async function latency(ctx: Ctx): Promise<ScenarioResult[]> {
  const [rounds, seconds] = ctx.quick ? [2, 1] : [5, 2];
  ctx.log(`delivery latency: ${rounds} rounds of ${seconds} s at ${RATE}/s, ${SIZE}-byte messages, each side`);
  await viaSockctl(ctx, 0.2);
  await viaRelay(ctx, 0.2);
  const r = await alternate(rounds, () => viaSockctl(ctx, seconds), () => viaRelay(ctx, seconds));
  const relay = 'net+ws relay';
  return [
    row('3. Delivery latency', 'p50', 'ms', summarize(r.a.map((x) => x.p50)), { name: relay, summary: summarize(r.b.map((x) => x.p50)) }, false, { max: 1.0 }),
    row('3. Delivery latency', 'p99', 'ms', summarize(r.a.map((x) => x.p99)), { name: relay, summary: summarize(r.b.map((x) => x.p99)) }, false, { max: 1.0 }),
  ];
}

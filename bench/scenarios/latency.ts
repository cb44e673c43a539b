import type { WebSocket } from 'ws';
import { nowMs } from '../lib/clock.js';
import { alternate, type Ctx } from '../lib/context.js';
import { row, type ScenarioResult } from '../lib/report.js';
import { quantile, summarize } from '../lib/stats.js';
import { relaySides, sockctlSide, type Side } from '../lib/sides.js';
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

async function run(ctx: Ctx, ws: WebSocket, conn: number, seconds: number, rate = RATE): Promise<Latency> {
  const count = Math.round(rate * seconds);
  const got = collect(ws, count, seconds * 1000 + 15_000);
  await ctx.peer.call('ticks', { conn, rate, count, size: SIZE }, seconds * 1000 + 15_000);
  const lat = await got;
  return { p50: quantile(lat, 0.5), p99: quantile(lat, 0.99) };
}

/** One round through `side`: its p50 and p99 in ms (`rate` messages per second: a warm-up goes faster). */
export async function via(ctx: Ctx, side: Side, seconds: number, rate = RATE): Promise<Latency> {
  const { ws, conn, cleanup } = await side.connect(ctx);
  try {
    return await run(ctx, ws, conn, seconds, rate);
  } finally {
    await cleanup();
  }
}

/**
 * 30,000 messages through `side` at 20x the measured rate, then 6 s (1 s quick) at the measured rate, so that
 * neither side is measured while V8 still compiles its path: in a full run the relay comes hot from
 * scenarios 1 and 2, and a service started for this scenario alone (`--only=3`) had seen 200 messages.
 * After 10,000 fast messages the service was still compiling during the rounds that followed
 * (`--trace-opt`: 93 lines over three rounds, p50 0.128, 0.094, then 0.083 ms). After 30,000 it still
 * compiled and deoptimized once the messages came one per read at 1,000/s (`--trace-opt --trace-deopt`:
 * 62, 23, 2, then 0 lines in the first rounds of 2 s), and those rounds' p99 was 0.6-0.8 ms against
 * 0.24-0.32 after; stalls of 1-5 ms in clusters through the round, which a relay started fresh showed as
 * well. The fresh service against the long-running relay then lost on p99 in most rounds of a full run.
 */
export async function warm(ctx: Ctx, side: Side): Promise<void> {
  await via(ctx, side, 1.5, 20 * RATE);
  await via(ctx, side, ctx.quick ? 1 : 6);
}

/** Scenario 3: 64-byte messages at 1,000/s, TCP peer → WebSocket client; p50 and p99 <= 1.0x the relay. */
export async function latency(ctx: Ctx): Promise<ScenarioResult[]> {
  // 11 rounds: one round's p50 spreads 0.085-0.17 ms on either side (a same-run A/B of 30 rounds a side), so
  // the median of 5 moved the ratio by ±10% between runs
  const [rounds, seconds] = ctx.quick ? [2, 1] : [11, 2];
  ctx.log(`delivery latency: ${rounds} rounds of ${seconds} s at ${RATE}/s, ${SIZE}-byte messages, each side`);
  const [ours, relay] = [sockctlSide(ctx), relaySides(ctx)[0]!];
  await warm(ctx, ours);
  await warm(ctx, relay);
  const r = await alternate(rounds, () => via(ctx, ours, seconds), () => via(ctx, relay, seconds));
  return [
    row('3. Delivery latency', 'p50', 'ms', summarize(r.a.map((x) => x.p50)), { name: relay.name, summary: summarize(r.b.map((x) => x.p50)) }, false, { max: 1.0 }),
    row('3. Delivery latency', 'p99', 'ms', summarize(r.a.map((x) => x.p99)), { name: relay.name, summary: summarize(r.b.map((x) => x.p99)) }, false, { max: 1.0 }),
  ];
}

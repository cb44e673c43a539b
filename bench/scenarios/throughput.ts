import { nowMs } from '../lib/clock.js';
import { rotate, type Ctx } from '../lib/context.js';
import { row, type ScenarioResult } from '../lib/report.js';
import { summarize } from '../lib/stats.js';
import { relaySides, sockctlSide, type Side } from '../lib/sides.js';
import { receiveBytes, sendBytes } from '../lib/ws-client.js';

const MiB = 1024 * 1024;
const FRAME = 64 * 1024;
/** What the WS → TCP client keeps in flight (ws.bufferedAmount). */
const SEND_WINDOW = 4 * MiB;

export interface Transfer {
  /** GB/s at the receiver (10^9 bytes). */
  gbps: number;
  /** The relaying process's CPU-seconds (utime + stime) per GB moved. */
  cpuPerGB: number;
}

type Direction = 'tcp-to-ws' | 'ws-to-tcp';

/** One transfer of `bytes` through `side`, timed from the start to the receiver's last byte. */
export async function transfer(ctx: Ctx, side: Side, direction: Direction, bytes: number): Promise<Transfer> {
  const { ws, conn, cleanup } = await side.connect(ctx);
  const timeout = 30_000 + bytes / 1e5; // 10 MB/s at worst
  try {
    const cpu0 = side.cpu();
    const t0 = nowMs();
    let lastMs: number;
    if (direction === 'tcp-to-ws') {
      const received = receiveBytes(ws, bytes, timeout);
      const sent = ctx.peer.call('blast', { conn, bytes }, timeout);
      lastMs = (await received).lastMs;
      await sent;
    } else {
      const received = ctx.peer.call<{ lastMs: number }>('sink', { conn, bytes, timeoutMs: timeout }, timeout + 5000);
      await sendBytes(ws, bytes, FRAME, SEND_WINDOW, timeout);
      lastMs = (await received).lastMs;
    }
    const cpu = side.cpu() - cpu0;
    return { gbps: bytes / 1e9 / ((lastMs - t0) / 1000), cpuPerGB: cpu / (bytes / 1e9) };
  } finally {
    await cleanup();
  }
}

/**
 * The warm-up of a full run is 1 GiB a side: a fresh service (each scenario starts one, while the relay runs from
 * scenario 1 on) spent 1.40 and 1.42 CPU-s per GB on its first two transfers of 512 MiB WebSocket -> TCP and
 * 1.08-1.25 on the next ten, and 0.73 and 0.71, then 0.54-0.63, TCP -> WebSocket.
 */
function sizes(ctx: Ctx): { bytes: number; rounds: number; warm: number } {
  return ctx.quick ? { bytes: 256 * MiB, rounds: 3, warm: 32 * MiB } : { bytes: 2048 * MiB, rounds: 5, warm: 1024 * MiB };
}

async function scenario(ctx: Ctx, name: string, direction: Direction, goals: { gbps: number; cpu: number }): Promise<ScenarioResult[]> {
  const { bytes, rounds, warm } = sizes(ctx);
  const sides = [sockctlSide(ctx), ...relaySides(ctx)];
  // websockify moves 0.4 GB/s WebSocket -> TCP: a quarter of the bytes keeps a quick run under a minute
  const size = (s: Side) => (ctx.quick && s.slow ? bytes / 4 : bytes);
  ctx.log(`${name}: ${rounds} rounds per side of ${sides.map((s) => `${size(s) / MiB} MiB (${s.name})`).join(', ')}, warm-up ${warm / MiB} MiB`);
  for (const s of sides) await transfer(ctx, s, direction, warm);
  const r = await rotate(rounds, sides.map((s) => () => transfer(ctx, s, direction, size(s))));
  sides.forEach((s, i) => ctx.log(`  ${s.name}: ${r[i]!.map((x) => x.gbps.toFixed(2)).join(' ')} GB/s, ${r[i]!.map((x) => x.cpuPerGB.toFixed(2)).join(' ')} CPU-s/GB`));
  const out: ScenarioResult[] = [];
  const ours = r[0]!;
  for (let i = 1; i < sides.length; i++) {
    const theirs = r[i]!;
    const isRelay = i === 1; // the issue's goals are against the minimal relay
    out.push(
      row(name, 'throughput at the receiver', 'GB/s', summarize(ours.map((x) => x.gbps)), { name: sides[i]!.name, summary: summarize(theirs.map((x) => x.gbps)) }, true, isRelay ? { min: goals.gbps } : undefined),
      row(name, 'service CPU per GB', 'CPU-s/GB', summarize(ours.map((x) => x.cpuPerGB)), { name: sides[i]!.name, summary: summarize(theirs.map((x) => x.cpuPerGB)) }, false, isRelay ? { max: goals.cpu } : undefined),
    );
  }
  return out;
}

/** Scenario 1: TCP → WebSocket, goal >= 1.15x the relay's GB/s and <= 0.7x its CPU per GB. */
export function tcpToWs(ctx: Ctx): Promise<ScenarioResult[]> {
  return scenario(ctx, '1. TCP → WebSocket', 'tcp-to-ws', { gbps: 1.15, cpu: 0.7 });
}

/** Scenario 2: WebSocket → TCP in 64 KiB frames, goal >= 1.0x the relay's GB/s and <= 0.95x its CPU per GB. */
export function wsToTcp(ctx: Ctx): Promise<ScenarioResult[]> {
  return scenario(ctx, '2. WebSocket → TCP', 'ws-to-tcp', { gbps: 1.0, cpu: 0.95 });
}

import { nowMs } from '../lib/clock.js';
import { alternate, type Ctx } from '../lib/context.js';
import { cpuSeconds } from '../lib/procs.js';
import { row, type ScenarioResult } from '../lib/report.js';
import { summarize } from '../lib/stats.js';
import { closeWs, openWs, receiveBytes, sendBytes } from '../lib/ws-client.js';

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

function transfer(bytes: number, ms: number, cpu: number): Transfer {
  return { gbps: bytes / 1e9 / (ms / 1000), cpuPerGB: cpu / (bytes / 1e9) };
}

/** A timed window of the relaying process: its CPU and the clock. */
async function measure(pid: number, run: () => Promise<number>): Promise<{ ms: number; cpu: number }> {
  const cpu0 = cpuSeconds(pid);
  const t0 = nowMs();
  const end = await run(); // the receiver's time of the last byte
  const cpu = cpuSeconds(pid) - cpu0;
  return { ms: end - t0, cpu };
}

/** TCP peer → sockctl socket → consumer stream → ws client. */
export async function tcpToWsSockctl(ctx: Ctx, bytes: number): Promise<Transfer> {
  const { service, peer } = ctx;
  const l = await service.listener();
  const { conn } = await peer.call('connect', { port: l.local!.port });
  const a = await service.accept(l.id);
  const ws = await openWs(service.streamUrl(a.id));
  const timeout = 30_000 + bytes / 1e5; // 10 MB/s at worst
  try {
    const m = await measure(service.pid, async () => {
      const received = receiveBytes(ws, bytes, timeout);
      const sent = peer.call('blast', { conn, bytes }, timeout);
      const r = await received;
      await sent;
      return r.lastMs;
    });
    return transfer(bytes, m.ms, m.cpu);
  } finally {
    await closeWs(ws);
    await peer.call('close', { conn });
    await service.close(a.id);
    await service.close(l.id);
  }
}

/** TCP peer → relay → ws client (the relay connects to the peer's listener). */
export async function tcpToWsRelay(ctx: Ctx, bytes: number): Promise<Transfer> {
  const { relay, peer } = ctx;
  const { port } = await peer.call('listen');
  const ws = await openWs(`ws://127.0.0.1:${relay.port}/?port=${port}`);
  const { conn } = await peer.call('accept');
  const timeout = 30_000 + bytes / 1e5;
  try {
    const m = await measure(relay.proc.pid, async () => {
      const received = receiveBytes(ws, bytes, timeout);
      const sent = peer.call('blast', { conn, bytes }, timeout);
      const r = await received;
      await sent;
      return r.lastMs;
    });
    return transfer(bytes, m.ms, m.cpu);
  } finally {
    await closeWs(ws);
    await peer.call('close', { conn });
  }
}

/** ws client → consumer stream → sockctl socket → TCP peer. */
export async function wsToTcpSockctl(ctx: Ctx, bytes: number): Promise<Transfer> {
  const { service, peer } = ctx;
  const l = await service.listener();
  const { conn } = await peer.call('connect', { port: l.local!.port });
  const a = await service.accept(l.id);
  const ws = await openWs(service.streamUrl(a.id));
  const timeout = 30_000 + bytes / 1e5;
  try {
    const m = await measure(service.pid, async () => {
      const received = peer.call<{ lastMs: number }>('sink', { conn, bytes, timeoutMs: timeout }, timeout + 5000);
      await sendBytes(ws, bytes, FRAME, SEND_WINDOW, timeout);
      return (await received).lastMs;
    });
    return transfer(bytes, m.ms, m.cpu);
  } finally {
    await closeWs(ws);
    await peer.call('close', { conn });
    await service.close(a.id);
    await service.close(l.id);
  }
}

export async function wsToTcpRelay(ctx: Ctx, bytes: number): Promise<Transfer> {
  const { relay, peer } = ctx;
  const { port } = await peer.call('listen');
  const ws = await openWs(`ws://127.0.0.1:${relay.port}/?port=${port}`);
  const { conn } = await peer.call('accept');
  const timeout = 30_000 + bytes / 1e5;
  try {
    const m = await measure(relay.proc.pid, async () => {
      const received = peer.call<{ lastMs: number }>('sink', { conn, bytes, timeoutMs: timeout }, timeout + 5000);
      await sendBytes(ws, bytes, FRAME, SEND_WINDOW, timeout);
      return (await received).lastMs;
    });
    return transfer(bytes, m.ms, m.cpu);
  } finally {
    await closeWs(ws);
    await peer.call('close', { conn });
  }
}

function rows(name: string, r: { a: Transfer[]; b: Transfer[] }, goals: { gbps: number; cpu: number }): ScenarioResult[] {
  return [
    row(name, 'throughput at the receiver', 'GB/s', summarize(r.a.map((x) => x.gbps)), { name: 'net+ws relay', summary: summarize(r.b.map((x) => x.gbps)) }, true, { min: goals.gbps }),
    row(name, 'service CPU per GB', 'CPU-s/GB', summarize(r.a.map((x) => x.cpuPerGB)), { name: 'net+ws relay', summary: summarize(r.b.map((x) => x.cpuPerGB)) }, false, { max: goals.cpu }),
  ];
}

function sizes(ctx: Ctx): { bytes: number; rounds: number; warm: number } {
  return ctx.quick ? { bytes: 256 * MiB, rounds: 3, warm: 32 * MiB } : { bytes: 2048 * MiB, rounds: 5, warm: 128 * MiB };
}

/** Scenario 1: TCP → WebSocket, goal >= 1.15x the relay's GB/s and <= 0.7x its CPU per GB. */
export async function tcpToWs(ctx: Ctx): Promise<ScenarioResult[]> {
  const { bytes, rounds, warm } = sizes(ctx);
  ctx.log(`TCP → WebSocket: ${rounds} rounds of ${bytes / MiB} MiB each side (warm-up ${warm / MiB} MiB)`);
  await tcpToWsSockctl(ctx, warm);
  await tcpToWsRelay(ctx, warm);
  const r = await alternate(rounds, () => tcpToWsSockctl(ctx, bytes), () => tcpToWsRelay(ctx, bytes));
  ctx.log(`  sockctl ${r.a.map((x) => x.gbps.toFixed(2)).join(' ')} GB/s; relay ${r.b.map((x) => x.gbps.toFixed(2)).join(' ')} GB/s`);
  return rows('1. TCP → WebSocket', r, { gbps: 1.15, cpu: 0.7 });
}

/** Scenario 2: WebSocket → TCP, goal >= 1.0x the relay's GB/s and <= 0.95x its CPU per GB. */
export async function wsToTcp(ctx: Ctx): Promise<ScenarioResult[]> {
  const { bytes, rounds, warm } = sizes(ctx);
  ctx.log(`WebSocket → TCP: ${rounds} rounds of ${bytes / MiB} MiB each side in ${FRAME / 1024} KiB frames`);
  await wsToTcpSockctl(ctx, warm);
  await wsToTcpRelay(ctx, warm);
  const r = await alternate(rounds, () => wsToTcpSockctl(ctx, bytes), () => wsToTcpRelay(ctx, bytes));
  ctx.log(`  sockctl ${r.a.map((x) => x.gbps.toFixed(2)).join(' ')} GB/s; relay ${r.b.map((x) => x.gbps.toFixed(2)).join(' ')} GB/s`);
  return rows('2. WebSocket → TCP', r, { gbps: 1.0, cpu: 0.95 });
}

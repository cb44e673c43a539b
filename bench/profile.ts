import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { nowMs } from './lib/clock.js';
import type { Ctx } from './lib/context.js';
import { formatProfile, summarizeProfile } from './lib/cpuprofile.js';
import { IpcChild } from './lib/ipc-child.js';
import { RawHttp, rate, warmUp } from './lib/raw-http.js';
import { ROOT, sleep, spawnNode, waitLine } from './lib/procs.js';
import { Service, TOKEN } from './lib/service.js';
import { relaySides, sockctlSide, type Side } from './lib/sides.js';
import { callTargets, warmUpBounds, WORKERS } from './scenarios/control-plane.js';
import { round as fanoutRound } from './scenarios/fanout.js';
import { via as latencyRound, warm as warmLatency } from './scenarios/latency.js';
import { transfer, type Transfer } from './scenarios/throughput.js';

/**
 * `npm run bench -- --profile[=WHAT]`: one workload with the service (and for tcp-ws the relay too) under
 * `--cpu-prof`; prints where each process spent its CPU inside the measured window (start-up excluded)
 * and writes the profiles and the report under bench/results/profiles/. WHAT is one of PROFILES.
 */
export const PROFILES = ['tcp-ws', 'ws-tcp', 'latency', 'send', 'recv', 'cycle', 'fanout'] as const;
export type ProfileName = (typeof PROFILES)[number];

const MiB = 1024 * 1024;

/** The main thread's profile in `dir` (node writes one per thread; tsx's loader runs in a worker). */
function mainThreadProfile(dir: string): string {
  // CPU.<date>.<time>.<pid>.<thread id: 0 for the main thread>.<seq>.cpuprofile
  const main = existsSync(dir) ? readdirSync(dir).find((f) => /\.\d+\.0\.\d+\.cpuprofile$/.test(f)) : undefined;
  if (!main) throw new Error(`no main-thread profile written in ${dir}`);
  return join(dir, main);
}

interface Section {
  name: string;
  profileDir: string;
  window: { fromMs: number; toMs: number };
  summary: string;
}

/** A side-by-side workload of the service and the relay: a warm-up, then the measured run's summary line. */
interface Workload {
  warm(side: Side): Promise<void>;
  run(side: Side): Promise<string>;
}

function transferWorkload(ctx: Ctx, what: 'tcp-ws' | 'ws-tcp', quick: boolean): Workload {
  const direction = what === 'tcp-ws' ? 'tcp-to-ws' : 'ws-to-tcp';
  const label = what === 'tcp-ws' ? 'TCP → WebSocket' : 'WebSocket → TCP';
  const [rounds, bytes] = quick ? [2, 256 * MiB] : [4, 512 * MiB];
  return {
    warm: async (side) => void (await transfer(ctx, side, direction, 32 * MiB)),
    async run(side) {
      const r: Transfer[] = [];
      for (let i = 0; i < rounds; i++) r.push(await transfer(ctx, side, direction, bytes));
      return `${rounds} × ${bytes / MiB} MiB ${label}: GB/s ${r.map((x) => x.gbps.toFixed(2)).join(' ')}; CPU-s/GB ${r.map((x) => x.cpuPerGB.toFixed(2)).join(' ')}`;
    },
  };
}

function latencyWorkload(ctx: Ctx, quick: boolean): Workload {
  const seconds = quick ? 2 : 6;
  return {
    warm: (side) => warmLatency(ctx, side),
    async run(side) {
      const r = await latencyRound(ctx, side, seconds);
      return `${seconds} s of 64-byte messages at 1,000/s, TCP → WebSocket: p50 ${r.p50.toFixed(3)} ms, p99 ${r.p99.toFixed(3)} ms`;
    },
  };
}

export async function profile(what: ProfileName, log: (msg: string) => void, quick: boolean): Promise<void> {
  const dir = join(ROOT, 'bench', 'results', 'profiles');
  mkdirSync(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const profDir = (who: string) => join(dir, `${what}-${stamp}`, who);
  // at 1,000 messages/s the default 1 ms sampling would see almost nothing of each message's path
  const interval = what === 'latency' ? ['--cpu-prof-interval=25'] : [];
  const prof = (who: string) => ['--cpu-prof', `--cpu-prof-dir=${profDir(who)}`, ...interval];
  const service = await Service.start({ nodeArgs: prof('sockctl') });
  const peer = await IpcChild.start('peer', 'bench/lib/peer.ts');
  const ctx: Ctx = { quick, service, relay: { proc: peer.proc, port: 0 }, websockify: null, peer, log, notes: [] };
  const stops: (() => Promise<void>)[] = [() => service.stop(), () => peer.stop()];
  const sections: Section[] = [];
  const measure = async (name: string, who: string, body: () => Promise<string>) => {
    const fromMs = nowMs();
    const summary = await body();
    sections.push({ name, profileDir: profDir(who), window: { fromMs, toMs: nowMs() }, summary });
  };
  try {
    if (what === 'tcp-ws' || what === 'ws-tcp' || what === 'latency') {
      const relayProc = spawnNode('relay', 'bench/baselines/relay.ts', { env: { RELAY_PORT: '0' }, nodeArgs: prof('relay') });
      stops.push(() => relayProc.stop());
      ctx.relay = { proc: relayProc, port: Number((await waitLine(relayProc, /listening on (\d+)/))[1]) };
      const workload = what === 'latency' ? latencyWorkload(ctx, quick) : transferWorkload(ctx, what, quick);
      for (const [side, who] of [[sockctlSide(ctx), 'sockctl'], [relaySides(ctx)[0]!, 'relay']] as const) {
        await workload.warm(side);
        await measure(side.name, who, () => workload.run(side));
      }
    } else if (what === 'fanout') {
      const observers = await IpcChild.start('observers', 'bench/lib/observers.ts');
      stops.push(() => observers.stop());
      const seconds = quick ? 1 : 3;
      await fanoutRound(ctx, null, 0.3); // warm-up
      await measure('sockctl', 'sockctl', async () => {
        const r = await fanoutRound(ctx, observers, seconds);
        return `fan-out round of ${seconds} s: producer ${r.producerRate.toFixed(0)} events/s, ${r.deliveredRate.toFixed(0)} deliveries/s to the observers, slowest /v1/health ${r.healthMax.toFixed(0)} ms`;
      });
    } else {
      const { ops, cleanup } = await callTargets(service, peer);
      const conns = await Promise.all(Array.from({ length: WORKERS }, () => RawHttp.open(service.port, TOKEN)));
      try {
        const ms = quick ? 2000 : 8000;
        // as scenario 4's goal rows: a busy-polling client (and for send, a peer woken per 4 KiB)
        await warmUp(conns, ops[what], { poll: true, ...warmUpBounds(quick) });
        await measure('sockctl', 'sockctl', async () => {
          const r = await rate(conns, ms, 1_000_000, ops[what], { poll: true });
          return `${what} over ${WORKERS} keep-alive connections (polling client) for ${ms} ms: ${r.opsPerSec.toFixed(0)}/s`;
        });
      } finally {
        for (const c of conns) c.close();
        await cleanup();
      }
    }
  } finally {
    // SIGTERM: the processes exit through process.exit(), which writes the profiles
    await Promise.allSettled(stops.map((s) => s()));
  }
  await sleep(200);
  const out: string[] = [];
  for (const s of sections) {
    const file = mainThreadProfile(s.profileDir);
    out.push(`=== ${s.name}: ${s.summary}`, `profile: ${file}`, formatProfile(summarizeProfile(file, s.window)), '');
  }
  const report = join(dir, `${what}-${stamp}.txt`);
  writeFileSync(report, out.join('\n'));
  process.stdout.write(`\n${out.join('\n')}\n`);
  log(`wrote ${report}`);
}

import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { nowMs } from './lib/clock.js';
import type { Ctx } from './lib/context.js';
import { formatProfile, summarizeProfile } from './lib/cpuprofile.js';
import { IpcChild } from './lib/ipc-child.js';
import { ROOT, sleep, spawnNode, waitLine } from './lib/procs.js';
import { RawHttp, rate } from './lib/raw-http.js';
import { Service, TOKEN } from './lib/service.js';
import { labCycle, WORKERS } from './scenarios/control-plane.js';
import { round as fanoutRound } from './scenarios/fanout.js';
import { relaySides, sockctlSide } from './lib/sides.js';
import { transfer, type Transfer } from './scenarios/throughput.js';

const MiB = 1024 * 1024;

/** The newest main-thread profile in `dir`: CPU.<date>.<time>.<pid>.<thread id 0>.<seq>.cpuprofile. */
function mainThreadProfile(dir: string): string {
  const main = existsSync(dir) ? readdirSync(dir).find((f) => /\.\d+\.0\.\d+\.cpuprofile$/.test(f)) : undefined;
  if (!main) throw new Error(`no main-thread profile written in ${dir}`);
  return join(dir, main);
}

function profilesDir(): { dir: string; stamp: string } {
  const dir = join(ROOT, 'bench', 'results', 'profiles');
  mkdirSync(dir, { recursive: true });
  return { dir, stamp: new Date().toISOString().replace(/[:.]/g, '-') };
}

/**
 * `npm run bench -- --profile`: the TCP → WebSocket scenario with the service and the relay under
 * `--cpu-prof`; prints where each spends its CPU during the transfers (start-up excluded) and writes the
 * profiles and the report to bench/results/profiles/.
 */
export async function profileTcpToWs(log: (msg: string) => void, quick: boolean): Promise<void> {
  const { dir, stamp } = profilesDir();
  // one directory per process: node writes one profile per thread (tsx's loader runs in a worker)
  const svcDir = join(dir, `sockctl-tcp-ws-${stamp}`);
  const relayDir = join(dir, `relay-tcp-ws-${stamp}`);
  const prof = (d: string) => ['--cpu-prof', `--cpu-prof-dir=${d}`];
  const service = await Service.start({ nodeArgs: prof(svcDir) });
  const relayProc = spawnNode('relay', 'bench/baselines/relay.ts', { env: { RELAY_PORT: '0' }, nodeArgs: prof(relayDir) });
  const relay = { proc: relayProc, port: Number((await waitLine(relayProc, /listening on (\d+)/))[1]) };
  const peer = await IpcChild.start('peer', 'bench/lib/peer.ts');
  const ctx: Ctx = { quick, service, relay, websockify: null, peer, log, notes: [] };
  const sides = [sockctlSide(ctx), relaySides(ctx)[0]!];
  const [rounds, bytes] = quick ? [2, 256 * MiB] : [4, 512 * MiB];
  const windows: { fromMs: number; toMs: number }[] = [];
  const results: Transfer[][] = [[], []];
  try {
    for (const side of sides) await transfer(ctx, side, 'tcp-to-ws', 32 * MiB);
    for (const [i, side] of sides.entries()) {
      const fromMs = nowMs();
      for (let r = 0; r < rounds; r++) results[i]!.push(await transfer(ctx, side, 'tcp-to-ws', bytes));
      windows.push({ fromMs, toMs: nowMs() });
    }
  } finally {
    await Promise.allSettled([service.stop(), relay.proc.stop(), peer.stop()]);
  }
  await sleep(200);
  const out: string[] = [];
  for (const [i, [name, d]] of ([['sockctl', svcDir], ['net+ws relay', relayDir]] as const).entries()) {
    const file = mainThreadProfile(d);
    const gbps = results[i]!.map((x) => x.gbps.toFixed(2)).join(' ');
    const cpu = results[i]!.map((x) => x.cpuPerGB.toFixed(2)).join(' ');
    out.push(`=== ${name}: ${rounds} × ${bytes / MiB} MiB TCP → WebSocket; GB/s ${gbps}; CPU-s/GB ${cpu}`, `profile: ${file}`, formatProfile(summarizeProfile(file, windows[i])), '');
  }
  const report = join(dir, `tcp-ws-${stamp}.txt`);
  writeFileSync(report, out.join('\n'));
  process.stdout.write(`\n${out.join('\n')}\n`);
  log(`wrote ${report}`);
}

/**
 * `npm run bench -- --profile-cycle`: the control plane's full lab cycle (scenario 4) for a few seconds,
 * with the service under `--cpu-prof`.
 */
export async function profileLabCycle(log: (msg: string) => void, quick: boolean): Promise<void> {
  const { dir, stamp } = profilesDir();
  const svcDir = join(dir, `sockctl-lab-cycle-${stamp}`);
  const service = await Service.start({ nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${svcDir}`] });
  const ms = quick ? 2000 : 8000;
  let window = { fromMs: 0, toMs: 0 };
  let cycles = 0;
  try {
    const conns = await Promise.all(Array.from({ length: WORKERS }, () => RawHttp.open(service.port, TOKEN)));
    await rate(conns, 500, 1_000_000, labCycle); // warm-up
    window = { fromMs: nowMs(), toMs: 0 };
    cycles = (await rate(conns, ms, 1_000_000, labCycle)).opsPerSec;
    window.toMs = nowMs();
    for (const c of conns) c.close();
  } finally {
    await service.stop();
  }
  await sleep(200);
  const file = mainThreadProfile(svcDir);
  const text = [`=== sockctl: lab cycles over ${WORKERS} keep-alive connections for ${ms} ms: ${cycles.toFixed(0)} cycles/s`, `profile: ${file}`, formatProfile(summarizeProfile(file, window)), ''].join('\n');
  const report = join(dir, `lab-cycle-${stamp}.txt`);
  writeFileSync(report, text);
  process.stdout.write(`\n${text}\n`);
  log(`wrote ${report}`);
}

/** `npm run bench -- --profile-fanout`: one fan-out round (scenario 6) with the service under `--cpu-prof`. */
export async function profileFanout(log: (msg: string) => void, quick: boolean): Promise<void> {
  const { dir, stamp } = profilesDir();
  const svcDir = join(dir, `sockctl-fanout-${stamp}`);
  const service = await Service.start({ nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${svcDir}`] });
  const peer = await IpcChild.start('peer', 'bench/lib/peer.ts');
  const observers = await IpcChild.start('observers', 'bench/lib/observers.ts');
  const ctx: Ctx = { quick, service, relay: { proc: peer.proc, port: 0 }, websockify: null, peer, log, notes: [] };
  const seconds = quick ? 1 : 3;
  let window = { fromMs: 0, toMs: 0 };
  let summary = '';
  try {
    await fanoutRound(ctx, null, 0.3);
    window = { fromMs: nowMs(), toMs: 0 };
    const r = await fanoutRound(ctx, observers, seconds);
    window.toMs = nowMs();
    summary = `producer ${r.producerRate.toFixed(0)} events/s, ${r.deliveredRate.toFixed(0)} deliveries/s to 100 observers, slowest /v1/health ${r.healthMax.toFixed(0)} ms`;
  } finally {
    await Promise.allSettled([service.stop(), peer.stop(), observers.stop()]);
  }
  await sleep(200);
  const file = mainThreadProfile(svcDir);
  const text = [`=== sockctl: fan-out round of ${seconds} s: ${summary}`, `profile: ${file}`, formatProfile(summarizeProfile(file, window)), ''].join('\n');
  const report = join(dir, `fanout-${stamp}.txt`);
  writeFileSync(report, text);
  process.stdout.write(`\n${text}\n`);
  log(`wrote ${report}`);
}

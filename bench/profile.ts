import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { nowMs } from './lib/clock.js';
import type { Ctx } from './lib/context.js';
import { formatProfile, summarizeProfile } from './lib/cpuprofile.js';
import { IpcChild } from './lib/ipc-child.js';
import { ROOT, sleep, spawnNode, waitLine } from './lib/procs.js';
import { Service } from './lib/service.js';
import { relaySides, sockctlSide } from './lib/sides.js';
import { transfer, type Transfer } from './scenarios/throughput.js';

const MiB = 1024 * 1024;

/**
 * `npm run bench -- --profile`: the TCP → WebSocket scenario with the service and the relay under
 * `--cpu-prof`; prints where each spends its CPU during the transfers (start-up excluded) and writes the
 * profiles and the report to bench/results/profiles/.
 */
export async function profileTcpToWs(log: (msg: string) => void, quick: boolean): Promise<void> {
  const dir = join(ROOT, 'bench', 'results', 'profiles');
  mkdirSync(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
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
    // the main thread's profile: CPU.<date>.<time>.<pid>.<thread id 0>.<seq>.cpuprofile
    const main = existsSync(d) ? readdirSync(d).find((f) => /\.\d+\.0\.\d+\.cpuprofile$/.test(f)) : undefined;
    if (!main) throw new Error(`no main-thread profile written in ${d}`);
    const file = join(d, main);
    const gbps = results[i]!.map((x) => x.gbps.toFixed(2)).join(' ');
    const cpu = results[i]!.map((x) => x.cpuPerGB.toFixed(2)).join(' ');
    out.push(`=== ${name}: ${rounds} × ${bytes / MiB} MiB TCP → WebSocket; GB/s ${gbps}; CPU-s/GB ${cpu}`, `profile: ${file}`, formatProfile(summarizeProfile(file, windows[i])), '');
  }
  const report = join(dir, `tcp-ws-${stamp}.txt`);
  writeFileSync(report, out.join('\n'));
  process.stdout.write(`\n${out.join('\n')}\n`);
  log(`wrote ${report}`);
}

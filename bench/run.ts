/**
 * `npm run bench`: every scenario of issue 6 against its baseline, alternating A/B rounds in one run;
 * prints a table and writes bench/results/latest.json (and bench/RESULTS.md after a full run). Every
 * process it starts is killed when it ends, even on failure; every wait is bounded, and so is the run.
 *
 *   --quick                 small sizes, under a minute in all
 *   --only=1,3              some scenarios (no RESULTS.md then)
 *   --service-dir=PATH      benchmark another checkout of sockctl (built), e.g. an older commit
 *   --profile[=WHAT]        one workload under --cpu-prof, analysed (no table): tcp-ws (the default)
 *                           or ws-tcp or latency (the service and the relay), send, recv, cycle (the lab cycle), fanout
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { type Ctx, type Scenario } from './lib/context.js';
import { IpcChild } from './lib/ipc-child.js';
import { profile, PROFILES, type ProfileName } from './profile.js';
import { killAll, machineCpu } from './lib/procs.js';
import { machine, table, writeResults, type ScenarioResult } from './lib/report.js';
import { Service, setServiceDir, startRelay, startWebsockify } from './lib/service.js';
import { controlPlane } from './scenarios/control-plane.js';
import { fanout } from './scenarios/fanout.js';
import { latency } from './scenarios/latency.js';
import { scale } from './scenarios/scale.js';
import { tcpToWs, wsToTcp } from './scenarios/throughput.js';

// a bare `--profile` means `--profile=tcp-ws` (parseArgs wants a value for a string option)
const argv = process.argv.slice(2).map((a) => (a === '--profile' ? '--profile=' : a));
const { values } = parseArgs({
  args: argv,
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    'service-dir': { type: 'string' },
    profile: { type: 'string' },
  },
});

/** The scenarios, by the number issue 6 gives them; `service`: it runs against ctx.service. */
const SCENARIOS: { id: string; run: Scenario; service: boolean }[] = [
  { id: '1', run: tcpToWs, service: true },
  { id: '2', run: wsToTcp, service: true },
  { id: '3', run: latency, service: true },
  { id: '4', run: controlPlane, service: true },
  { id: '5', run: scale, service: false }, // starts its own two services, with a high RLIMIT_NOFILE
  { id: '6', run: fanout, service: true },
];

/** Each scenario gets a fresh service, so that none inherits another's state (closed sockets, heap, JIT). */
const startService = () => Service.start({ env: { SOCKCTL_MAX_SOCKETS: '2000' } });

async function main(): Promise<void> {
  const started = Date.now();
  const quick = values.quick ?? false;
  const only = values.only?.split(',').map((s) => s.trim());
  const log = (msg: string) => process.stdout.write(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s] ${msg}\n`);
  if (values['service-dir']) setServiceDir(resolve(values['service-dir']));
  log(`sockctl bench, ${quick ? 'quick' : 'full'} mode${values['service-dir'] ? `, service from ${values['service-dir']}` : ''}`);
  // the last line of defence for "ends by itself": every wait is bounded, and so is the whole run
  const limitMs = quick ? 120_000 : 15 * 60_000;
  setTimeout(() => {
    log(`watchdog: the run passed ${limitMs / 1000} s; stopping every process`);
    killAll();
    process.exit(2);
  }, limitMs).unref();
  if (values.profile !== undefined) {
    const what = (values.profile || 'tcp-ws') as ProfileName;
    if (!PROFILES.includes(what)) throw new Error(`--profile=${what}: expected one of ${PROFILES.join(', ')}`);
    return profile(what, log, quick);
  }
  const chosen = SCENARIOS.filter((s) => !only || only.includes(s.id));
  const [first, relay, peer] = await Promise.all([
    chosen[0]?.service ? startService() : undefined,
    startRelay(),
    IpcChild.start('peer', 'bench/lib/peer.ts'),
  ]);
  const ctx: Ctx = { quick, service: first!, relay, websockify: null, peer, log, notes: [] };
  const rows: ScenarioResult[] = [];
  const failures: string[] = [];
  try {
    const peerPort = (await peer.call<{ port: number }>('listen')).port;
    ctx.websockify = await startWebsockify(peerPort).catch((e: unknown) => {
      ctx.notes.push(`websockify found but did not start: ${e instanceof Error ? e.message : String(e)}`);
      return null;
    });
    if (!ctx.websockify && !ctx.notes.length)
      ctx.notes.push('websockify is not installed (`which websockify` found nothing): its rows are skipped; `apt-get install websockify` adds them');
    let service = first;
    for (const { id, run, service: needsService } of chosen) {
      try {
        if (needsService) ctx.service = service ??= await startService();
        const cpu0 = machineCpu();
        const t0 = Date.now();
        rows.push(...(await run(ctx)));
        // other processes on this machine (tests, builds) take cores from the bench: say so
        const cpu1 = machineCpu();
        const foreign = (cpu1.all - cpu0.all - (cpu1.ours - cpu0.ours)) / ((Date.now() - t0) / 1000);
        if (foreign > 0.1) {
          const note = `scenario ${id}: other processes used ${(100 * foreign).toFixed(0)}% of a core on average while it ran; its figures may be perturbed`;
          ctx.notes.push(note);
          log(`  note: ${note.slice(note.indexOf(':') + 2)}`);
        }
      } catch (e) {
        log(`scenario ${id} failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
        failures.push(`scenario ${id} failed: ${e instanceof Error ? e.message : String(e)}`);
      } finally {
        await service?.stop();
        service = undefined;
      }
    }
  } finally {
    await Promise.allSettled([relay.proc.stop(), peer.stop(), ctx.websockify?.proc.stop()]);
  }
  process.stdout.write(`\n${table(rows)}\n\n`);
  for (const n of [...ctx.notes, ...failures]) process.stdout.write(`- ${n}\n`);
  const files = writeResults(rows, machine(), [...ctx.notes, ...failures], !quick && !only, 'npm run bench');
  log(`wrote ${files.join(', ')}`);
  if (failures.length) process.exitCode = 1;
}

main()
  .catch((e: unknown) => {
    process.stderr.write(`bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = 1;
  })
  .finally(killAll);

// first: before the collections of start-up (see the module)
import './pin-tick-maps.js';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { buildApp } from './app.js';
import { loadConfig, makeUnixDir } from './config.js';
import { native } from './io/native.js';

/**
 * Freed heap kept for reuse, not handed back to the kernel (mallopt; glibc only). A WebSocket → TCP stream
 * at 1 GB/s allocates a 64 KiB read buffer per socket read and frees them in bursts after each scavenge:
 * with glibc's default thresholds the heap's top was trimmed and refaulted, 25,000-80,000 page faults per
 * GiB; with these, 40-400, and 4% less CPU per GB (bench scenario 2, same-run A/B). The cost: up to
 * this much freed memory stays resident after a burst.
 */
const KEEP_FREED_HEAP_BYTES = 64 * 1024 * 1024;
/** Allocations under this come from the heap, as glibc's sliding threshold would settle at (its maximum). */
const MMAP_AT_BYTES = 32 * 1024 * 1024;

/**
 * How far V8 lets the old generation grow past what the last full GC left, in percent: 300 is a factor
 * of 4, the top of the range (1.1-4) V8 picks from by the mutator's share of the time. For this small heap
 * (~25 MB, most of it the dependencies' code) under light traffic V8 settled near 1.1, and each streamed
 * message's event (the event log's ring) and retained chunk live long enough to be promoted, so a consumer
 * stream at 1,000 messages/s ran a full GC every few seconds, each stopping the event loop for 5-20 ms (an
 * atomic pause of 4-6 ms, incremental steps of up to 12 ms): bench scenario 3's median round had a p99 of
 * 1.0-1.4 ms against the relay's 0.3; with this, 0.28-0.36. The flag fixes the factor rather than setting
 * a floor, so lower values cost the heavy-allocation paths: 50% took WebSocket → TCP (scenario 2) to 2.5
 * CPU-s/GB and 100% to 1.2-1.9, where 300% measured 0.86-1.0 as without it. The cost is memory: the heap
 * may hold up to four times what is live before a full GC (RSS per socket at 10,000 sockets: 1.8-2.0 KB,
 * 1.77-2.06 before).
 */
const HEAP_GROWING_PERCENT = 300;

/**
 * V8 flags set at start-up. `--no-allocation-site-pretenuring`: V8 may decide, from what survived while the
 * service warmed up, to allocate some object literal's instances straight in the old generation. In about
 * one service process in five under control-plane load (8 of 39), such a decision evidently took in a
 * short-lived per-request object: each one then kept the young objects it points to alive through the next
 * scavenge, and so the whole request's graph was promoted, about 4.2 KB per call (`--trace-gc-nvp`), every
 * scavenge took 4.5-5 ms instead of 0.6-0.8, and GC cost 6.5-7.6 µs a call instead of 0.7-0.9: recv ran
 * 21,000-23,000 calls/s instead of 27,000-32,000, send 15,000 instead of 19,000-23,500
 * (`--trace-pretenuring-statistics` showed the one site left untenured, its every object alive). The process
 * kept that mode to its end. Without pretenuring, 12 processes of 12 promoted 73 bytes a call (the event
 * log's ring entry) and none went bad.
 *
 * `--no-memory-reducer` is not here but on the command line (package.json's start scripts): V8 sets its
 * memory reducer up with the heap, so the flag has no effect once the process runs. The reducer starts a
 * compacting mark-compact when the heap grew and the allocation rate then falls, as after a burst: under
 * bench scenario 3's steady 1,000 messages/s it ran one to three of them, 9-21 ms each (`--trace-gc`:
 * "Mark-Compact (reduce)"), in three of eight rounds, whose p99 went to 4-15 ms. Without it no round had
 * one, and the pooled p99 of eight rounds was 0.339 ms against the relay's 0.345 (0.47-1.36 ms in four runs
 * with it). The cost: the heap is not shrunk when the service goes quiet.
 */
const V8_FLAGS = [`--heap-growing-percent=${HEAP_GROWING_PERCENT}`, '--no-allocation-site-pretenuring'];

/** The entry: config from the environment, listen, close every socket on SIGINT/SIGTERM. */
async function main(): Promise<void> {
  const config = loadConfig(process.env);
  native.keepFreedHeap(KEEP_FREED_HEAP_BYTES, MMAP_AT_BYTES);
  for (const flag of V8_FLAGS) setFlagsFromString(flag);
  const generatedToken = !config.token && !config.tokensFile;
  if (generatedToken) config.token = randomBytes(24).toString('base64url');
  const ownUnixDir = !config.unixDir;
  if (ownUnixDir) config.unixDir = makeUnixDir();

  const app = await buildApp(config);
  let closing = false;
  const shutdown = async (signal: string) => {
    if (closing) return;
    closing = true;
    app.log.info({ signal }, 'shutting down: closing every socket');
    // if the HTTP side hangs, still release every socket and path before giving up
    const timer = setTimeout(() => {
      app.log.error('shutdown took over 10 s: closing sockets directly');
      app.registry.closeAll('service shutting down');
      if (ownUnixDir) rmSync(config.unixDir, { recursive: true, force: true });
      process.exit(1);
    }, 10_000).unref();
    await app.close();
    if (ownUnixDir) rmSync(config.unixDir, { recursive: true, force: true });
    clearTimeout(timer);
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGHUP', () => {
    try {
      const n = app.users.reload();
      app.policy.reload();
      app.log.info({ users: n }, 'reloaded tokens and policy');
    } catch (e) {
      app.log.error({ err: e }, 'reload failed: the previous tokens and policy stay');
    }
  });

  const address = await app.listen({ host: config.host, port: config.port });
  if (generatedToken) {
    // printed once, on stdout only, never through the logger
    process.stdout.write(`sockctl listening on ${address}\nSOCKCTL_TOKEN=${config.token}\n`);
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`sockctl: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});

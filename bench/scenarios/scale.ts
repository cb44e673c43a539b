import { alternate, type Ctx } from '../lib/context.js';
import { collectGarbage } from '../lib/inspector-gc.js';
import { freePort, rssBytes, sleep, spawnNode, waitLine } from '../lib/procs.js';
import { RawHttp } from '../lib/raw-http.js';
import { row, type ScenarioResult } from '../lib/report.js';
import { Service, TOKEN } from '../lib/service.js';
import { quantile, summarize } from '../lib/stats.js';

const WORKERS = 8;
const SMALL_PAIRS = 5;
const NOFILE = 65536;

/** RSS once the process has settled and collected its garbage (see inspector-gc.ts). */
async function settledRss(pid: number, inspectPort: number): Promise<number> {
  await sleep(300);
  await collectGarbage(inspectPort);
  await sleep(300);
  return rssBytes(pid);
}

/** `pairs` connected TCP pairs through the API: create, connect to the shared listener, accept. */
async function makePairs(conns: RawHttp[], listenerId: string, port: number, pairs: number): Promise<void> {
  let left = pairs;
  await Promise.all(
    conns.map(async (h) => {
      while (left > 0) {
        left--;
        const c = await h.json('POST', '/v1/sockets', { family: 'inet', type: 'stream', label: 'bench-scale' });
        await h.json('POST', `/v1/sockets/${c.id}/connect`, { address: '127.0.0.1', port });
        await h.json('POST', `/v1/sockets/${listenerId}/accept`, { timeoutMs: 10_000 });
      }
    }),
  );
}

/**
 * Gives a service `pairs` pairs: SMALL_PAIRS first (which also warms every path up), then, with an
 * inspector port, the rest between two RSS readings. Returns the RSS per added socket (bytes) and the
 * id of one connected socket to probe.
 */
async function buildUp(svc: Service, pairs: number, inspectPort?: number): Promise<{ perSocket: number; probe: string }> {
  const conns = await Promise.all(Array.from({ length: WORKERS }, () => RawHttp.open(svc.port, TOKEN)));
  try {
    const l = await svc.listener('bench-scale', 4096);
    await makePairs(conns, l.id, l.local!.port, SMALL_PAIRS);
    let perSocket = NaN;
    if (inspectPort !== undefined && pairs > SMALL_PAIRS) {
      const before = await settledRss(svc.pid, inspectPort);
      await makePairs(conns, l.id, l.local!.port, pairs - SMALL_PAIRS);
      const after = await settledRss(svc.pid, inspectPort);
      perSocket = (after - before) / (2 * (pairs - SMALL_PAIRS));
    }
    const list = await conns[0]!.json<{ items: { id: string }[] }>('GET', '/v1/sockets?label=bench-scale&state=connected');
    return { perSocket, probe: list.items[0]!.id };
  } finally {
    for (const h of conns) h.close();
  }
}

/** The `net` baseline holding `pairs` pairs: RSS per socket the same way. */
async function netBaseline(pairs: number): Promise<number> {
  const inspect = await freePort();
  const proc = spawnNode('net-pairs', 'bench/baselines/net-pairs.ts', {
    env: { PAIRS: String(pairs) },
    nodeArgs: [`--inspect=127.0.0.1:${inspect}`],
    nofile: NOFILE,
    stdin: true,
  });
  try {
    await waitLine(proc, /ready/);
    const before = await settledRss(proc.pid, inspect);
    proc.child.stdin!.write('go\n');
    await waitLine(proc, /held \d+/, 60_000);
    const after = await settledRss(proc.pid, inspect);
    return (after - before) / (2 * pairs);
  } finally {
    await proc.stop();
  }
}

async function timed(h: RawHttp, method: string, path: string): Promise<number> {
  const t = performance.now();
  const r = await h.request(method, path);
  if (r.status !== 200) throw new Error(`${method} ${path}: ${r.status}`);
  return performance.now() - t;
}

/** Every page of GET /v1/sockets, following `next`: the whole time. */
async function timedAllPages(h: RawHttp): Promise<number> {
  const t = performance.now();
  let after: string | null = null;
  do {
    const page: { next: string | null } = await h.json('GET', `/v1/sockets${after ? `?after=${after}` : ''}`);
    after = page.next;
  } while (after !== null);
  return performance.now() - t;
}

/**
 * Scenario 5: 5,000 pairs (10,000 sockets) made through the API; RSS per socket (goal <= 4 KB; a plain
 * `net` socket is the baseline), and the latency of GET /v1/sockets (a page, and all pages) and of GET /v1/sockets/{id} on a
 * service holding them vs one holding 5 pairs (goal: the single call within 1.2x). The two services run
 * side by side, so that the calls alternate between them.
 */
export async function scale(ctx: Ctx): Promise<ScenarioResult[]> {
  const pairs = ctx.quick ? 1000 : 5000;
  const [singles, lists] = ctx.quick ? [300, 3] : [2000, 7];
  ctx.log(`scale: ${pairs} pairs (${2 * pairs} sockets) through the API vs ${SMALL_PAIRS} pairs; net baseline`);
  const inspect = await freePort();
  const env = { SOCKCTL_MAX_SOCKETS: String(2 * pairs + 500), SOCKCTL_MAX_WAIT_MS: '10000' };
  const [big, small] = await Promise.all([
    Service.start({ name: 'sockctl-big', env, nofile: NOFILE, nodeArgs: [`--inspect=127.0.0.1:${inspect}`] }),
    Service.start({ name: 'sockctl-small', env, nofile: NOFILE }),
  ]);
  try {
    // RSS readings do not depend on timing: the three build-ups run at once
    const [b, { probe: smallProbe }, netPerSocket] = await Promise.all([buildUp(big, pairs, inspect), buildUp(small, SMALL_PAIRS), netBaseline(pairs)]);
    ctx.log(`  RSS per socket: sockctl ${(b.perSocket / 1000).toFixed(2)} KB, net ${(netPerSocket / 1000).toFixed(2)} KB`);
    const hb = await RawHttp.open(big.port, TOKEN);
    const hs = await RawHttp.open(small.port, TOKEN);
    try {
      // warm-up, then alternate single calls between the two services
      for (let i = 0; i < 50; i++) {
        await timed(hb, 'GET', `/v1/sockets/${b.probe}`);
        await timed(hs, 'GET', `/v1/sockets/${smallProbe}`);
      }
      const one = await alternate(singles, () => timed(hb, 'GET', `/v1/sockets/${b.probe}`), () => timed(hs, 'GET', `/v1/sockets/${smallProbe}`));
      const page = await alternate(lists, () => timed(hb, 'GET', '/v1/sockets'), () => timed(hs, 'GET', '/v1/sockets'));
      const all = await alternate(lists, () => timedAllPages(hb), () => timedAllPages(hs));
      ctx.log(`  GET /v1/sockets/{id} p50 ${quantile(one.a, 0.5).toFixed(3)} vs ${quantile(one.b, 0.5).toFixed(3)} ms; GET /v1/sockets one page ${quantile(page.a, 0.5).toFixed(1)} vs ${quantile(page.b, 0.5).toFixed(2)} ms, all pages ${quantile(all.a, 0.5).toFixed(1)} ms`);
      const p99 = (xs: number[]) => quantile(xs, 0.99);
      const name = `5. Scale (${2 * pairs} sockets)`;
      const small10 = `same, ${2 * SMALL_PAIRS} sockets`;
      return [
        row(name, 'service RSS per socket', 'KB', summarize([b.perSocket / 1000]), { name: 'plain net socket', summary: summarize([netPerSocket / 1000]) }, false, { maxValue: 4 }),
        row(name, 'GET /v1/sockets/{id} p50', 'ms', summarize([quantile(one.a, 0.5)]), { name: small10, summary: summarize([quantile(one.b, 0.5)]) }, false, { max: 1.2 }),
        row(name, 'GET /v1/sockets/{id} p99', 'ms', summarize([p99(one.a)]), { name: small10, summary: summarize([p99(one.b)]) }, false),
        row(name, 'GET /v1/sockets (a page of 1000)', 'ms', summarize(page.a), { name: small10, summary: summarize(page.b) }, false),
        row(name, 'GET /v1/sockets (all pages)', 'ms', summarize(all.a), { name: small10, summary: summarize(all.b) }, false),
      ];
    } finally {
      hb.close();
      hs.close();
    }
  } finally {
    await Promise.allSettled([big.stop(), small.stop()]);
  }
}

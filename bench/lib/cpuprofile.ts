import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { ROOT } from './procs.js';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface FunctionTime {
  name: string;
  where: string;
  selfMs: number;
  totalMs: number;
}

export interface ProfileSummary {
  totalMs: number;
  idleMs: number;
  gcMs: number;
  functions: FunctionTime[];
  /** Self time by where the code lives: sockctl (src/, routes/), ws, fastify, node internals, native. */
  areas: Record<string, number>;
}

function where(url: string, line: number): string {
  if (!url) return '';
  const path = url.startsWith('file://') ? relative(ROOT, new URL(url).pathname) : url;
  // TypeScript files run as tsx compiled them: their positions are not the source's, so name the file only
  return path.endsWith('.ts') ? path : `${path}:${line + 1}`;
}

function area(url: string, name: string): string {
  if (name === '(garbage collector)') return 'GC';
  if (name === '(program)') return 'native / syscalls (program)';
  if (name === '(idle)') return 'idle';
  if (!url) return 'native / builtins';
  if (url.startsWith('node:')) return 'node internals';
  if (url.includes('/node_modules/ws/')) return 'ws';
  if (url.includes('/node_modules/fastify') || url.includes('/node_modules/@fastify/') || url.includes('/node_modules/find-my-way') || url.includes('/node_modules/light-my-request')) return 'fastify';
  if (url.includes('/node_modules/')) return 'other dependencies';
  if (url.includes('/bench/')) return 'bench';
  return 'sockctl (src/, routes/)';
}

/**
 * Self and total (inclusive) time per function of a .cpuprofile (V8's JSON, as --cpu-prof writes it).
 * With `window` (ms on the monotonic clock of bench/lib/clock.ts, which V8's timestamps share on Linux),
 * only the samples taken inside it: the measured transfer, not the start-up.
 */
export function summarizeProfile(file: string, window?: { fromMs: number; toMs: number }): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const selfUs = new Map<number, number>();
  // timeDeltas[i] is the time before sample i; attribute the interval after a sample to it
  let t = p.startTime;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i]!;
    if (window && (t / 1000 < window.fromMs || t / 1000 > window.toMs)) continue;
    const dt = p.timeDeltas[i + 1] ?? 0;
    selfUs.set(p.samples[i]!, (selfUs.get(p.samples[i]!) ?? 0) + dt);
  }
  const key = (n: ProfileNode) => `${n.callFrame.functionName || '(anonymous)'}\u0000${where(n.callFrame.url, n.callFrame.lineNumber)}`;
  const fns = new Map<string, FunctionTime>();
  const areas: Record<string, number> = {};
  let totalUs = 0;
  for (const [id, us] of selfUs) {
    const n = byId.get(id)!;
    totalUs += us;
    const k = key(n);
    const f = fns.get(k) ?? { name: n.callFrame.functionName || '(anonymous)', where: where(n.callFrame.url, n.callFrame.lineNumber), selfMs: 0, totalMs: 0 };
    f.selfMs += us / 1000;
    fns.set(k, f);
    const a = area(n.callFrame.url, n.callFrame.functionName);
    areas[a] = (areas[a] ?? 0) + us / 1000;
    // inclusive: once per distinct function on the stack
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const node = byId.get(cur)!;
      const ck = key(node);
      if (seen.has(ck)) continue;
      seen.add(ck);
      const g = fns.get(ck) ?? { name: node.callFrame.functionName || '(anonymous)', where: where(node.callFrame.url, node.callFrame.lineNumber), selfMs: 0, totalMs: 0 };
      g.totalMs += us / 1000;
      fns.set(ck, g);
    }
  }
  const idleMs = [...fns.values()].filter((f) => f.name === '(idle)').reduce((s, f) => s + f.selfMs, 0);
  const gcMs = [...fns.values()].filter((f) => f.name === '(garbage collector)').reduce((s, f) => s + f.selfMs, 0);
  return { totalMs: totalUs / 1000, idleMs, gcMs, functions: [...fns.values()], areas };
}

/** A text report: time by area, then the top functions by self time and by total time (busy time only). */
export function formatProfile(s: ProfileSummary, top = 25): string {
  const busy = s.totalMs - s.idleMs;
  const pct = (ms: number) => `${((100 * ms) / busy).toFixed(1).padStart(5)}%`;
  const lines = [`busy ${busy.toFixed(0)} ms of ${s.totalMs.toFixed(0)} ms sampled (idle ${s.idleMs.toFixed(0)} ms)`, '', 'self time by area:'];
  for (const [a, ms] of Object.entries(s.areas).sort((x, y) => y[1] - x[1])) if (a !== 'idle') lines.push(`  ${pct(ms)}  ${ms.toFixed(0).padStart(7)} ms  ${a}`);
  lines.push('', `top ${top} by self time:`);
  const skip = new Set(['(idle)', '(root)']);
  for (const f of [...s.functions].filter((f) => !skip.has(f.name)).sort((a, b) => b.selfMs - a.selfMs).slice(0, top))
    lines.push(`  ${pct(f.selfMs)}  ${f.selfMs.toFixed(0).padStart(7)} ms  ${f.name}  ${f.where}`);
  lines.push('', `top ${top} by total time (self + callees), sockctl and ws code:`);
  for (const f of [...s.functions]
    .filter((f) => !skip.has(f.name) && f.where && !f.where.startsWith('node:') && !f.where.includes('node_modules/fastify') && !f.where.includes('node_modules/tsx'))
    .sort((a, b) => b.totalMs - a.totalMs)
    .slice(0, top))
    lines.push(`  ${pct(f.totalMs)}  ${f.totalMs.toFixed(0).padStart(7)} ms  ${f.name}  ${f.where}`);
  return lines.join('\n');
}

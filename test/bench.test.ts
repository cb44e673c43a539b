// The benchmark's arithmetic (bench/lib): the figures in README Performance and bench/results/latest.json
// come from these, so a wrong median, ratio or goal check would misreport every run.
import { describe, expect, it } from 'vitest';
import { alternate, rotate } from '../bench/lib/context.js';
import { machine, markdown, resultsDocument, round, row, table } from '../bench/lib/report.js';
import { warmUp, type RawHttp } from '../bench/lib/raw-http.js';
import { quantile, summarize } from '../bench/lib/stats.js';

const s = (...xs: number[]) => summarize(xs);

describe('bench statistics', () => {
  it('interpolates quantiles between ranks, whatever the order of the samples', () => {
    expect(quantile([4, 1, 3, 2], 0.5)).toBe(2.5);
    expect(quantile([3, 1, 2], 0.5)).toBe(2);
    expect(quantile(Array.from({ length: 101 }, (_, i) => 100 - i), 0.99)).toBe(99);
    expect(quantile([7], 0.99)).toBe(7);
    expect(quantile([], 0.5)).toBeNaN();
    expect(s(5, 1, 9)).toEqual({ median: 5, min: 1, max: 9, samples: [5, 1, 9] });
  });

  it('rounds to three significant digits, and to an integer from 1000 up', () => {
    expect(round(0.59712)).toBe(0.597);
    expect(round(1.4666)).toBe(1.47);
    expect(round(53268.6)).toBe(53269);
    expect(round(Infinity)).toBe(Infinity);
  });
});

describe('bench rows and goals', () => {
  it('a higher-is-better ratio goal: met at or above it, not below', () => {
    const ok = row('4. Control plane', 'send calls', 'calls/s', s(29000, 30000, 31000), { name: 'bare', summary: s(50000, 60000, 55000) }, true, { min: 0.5 });
    expect(ok).toMatchObject({ value: 30000, baselineValue: 55000, ratio: 0.545, goal: '>= 0.5x', met: true, min: 29000, max: 31000, baselineMin: 50000, baselineMax: 60000, rounds: 3 });
    const edge = row('x', 'm', 'u', s(50), { name: 'b', summary: s(100) }, true, { min: 0.5 });
    expect(edge.met).toBe(true);
    const miss = row('x', 'm', 'u', s(20000), { name: 'b', summary: s(50000) }, true, { min: 0.5 });
    expect(miss).toMatchObject({ ratio: 0.4, met: false });
  });

  it('a ratio that rounds onto the bound keeps the digit that decides the goal', () => {
    expect(row('3', 'p99', 'ms', s(0.437), { name: 'relay', summary: s(0.435) }, false, { max: 1 })).toMatchObject({ ratio: 1.005, met: false });
    expect(row('4', 'send', 'calls/s', s(49990), { name: 'bare', summary: s(100000) }, true, { min: 0.5 })).toMatchObject({ ratio: 0.4999, met: false });
    expect(row('3', 'p99', 'ms', s(0.4349), { name: 'relay', summary: s(0.435) }, false, { max: 1 })).toMatchObject({ ratio: 1, met: true });
  });

  it('a lower-is-better ratio goal: met at or below it, not above', () => {
    const ok = row('1', 'CPU', 'CPU-s/GB', s(0.6), { name: 'relay', summary: s(1) }, false, { max: 0.7 });
    expect(ok).toMatchObject({ ratio: 0.6, goal: '<= 0.7x', met: true, higherIsBetter: false });
    expect(row('1', 'CPU', 'CPU-s/GB', s(0.75), { name: 'relay', summary: s(1) }, false, { max: 0.7 }).met).toBe(false);
  });

  it('a bound on the value itself, with or without a baseline', () => {
    const ok = row('5', 'RSS', 'KB', s(2), { name: 'net', summary: s(1.9) }, false, { maxValue: 4 });
    expect(ok).toMatchObject({ goal: '<= 4 KB', met: true, ratio: 1.05 });
    expect(row('5', 'RSS', 'KB', s(4.2), null, false, { maxValue: 4 })).toMatchObject({ baseline: null, baselineValue: null, ratio: null, met: false });
  });

  it('no goal: no goal or met field; a zero baseline gives no ratio', () => {
    const r = row('6', 'CPU per event', 'µs', s(0.7), { name: 'b', summary: s(0) }, false);
    expect(r.ratio).toBeNull();
    expect('goal' in r || 'met' in r).toBe(false);
  });

  it('latest.json has the shape issue 6 gives, and the table and markdown say whether each goal was met', () => {
    const rows = [
      row('4. Control plane', 'send calls', 'calls/s', s(30000), { name: 'bare fastify route', summary: s(50000) }, true, { min: 0.5 }),
      row('4. Control plane', 'lab cycles', 'cycles/s', s(800), { name: 'bare / 11', summary: s(4000) }, true),
      row('1. TCP → WebSocket', 'service CPU per GB', 'CPU-s/GB', s(0.8), { name: 'relay|a', summary: s(1) }, false, { max: 0.7 }),
    ];
    const m = machine();
    expect(m.cores).toBeGreaterThan(0);
    const doc = JSON.parse(JSON.stringify(resultsDocument(rows, m, ['a note'], false)));
    expect(Object.keys(doc.machine).sort()).toEqual(['cores', 'cpu', 'date', 'kernel', 'node']);
    expect(doc.mode).toBe('quick');
    for (const r of doc.scenarios)
      for (const k of ['name', 'metric', 'unit', 'value', 'baseline', 'baselineValue', 'ratio', 'higherIsBetter']) expect(r).toHaveProperty(k);
    expect(doc.scenarios[0]).toMatchObject({ name: '4. Control plane', metric: 'send calls', unit: 'calls/s', value: 30000, baseline: 'bare fastify route', baselineValue: 50000, ratio: 0.6, higherIsBetter: true });
    const t = table(rows).split('\n');
    expect(t).toHaveLength(2 + rows.length);
    expect(t[2]).toMatch(/0\.6x\s+>= 0\.5x met\s*$/);
    expect(t[3]).not.toMatch(/met/);
    expect(t[4]).toMatch(/0\.8x\s+<= 0\.7x NOT met\s*$/);
    const md = markdown(rows, m, ['a note'], 'npm run bench');
    expect(md).toContain('| 1. TCP → WebSocket | service CPU per GB (CPU-s/GB, lower is better) | 0.8 [0.8–0.8] | relay\\|a | 1 [1–1] | 0.8x | <= 0.7x NOT met |');
    expect(md.trimEnd().endsWith('- a note')).toBe(true);
  });
});

describe('bench round order', () => {
  it('alternate runs A B, B A, A B, so that neither side always goes first', async () => {
    const order: string[] = [];
    const r = await alternate(3, async () => (order.push('a'), order.length), async () => (order.push('b'), order.length));
    expect(order.join('')).toBe('abbaab');
    expect(r).toEqual({ a: [1, 4, 5], b: [2, 3, 6] });
  });

  it('rotate starts each round one side later', async () => {
    const order: number[] = [];
    const r = await rotate(3, [0, 1, 2].map((i) => async () => (order.push(i), i * 10)));
    expect(order).toEqual([0, 1, 2, 1, 2, 0, 2, 0, 1]);
    expect(r).toEqual([[0, 0, 0], [10, 10, 10], [20, 20, 20]]);
  });
});

describe('bench warm-up', () => {
  // An op that takes a timer of 2 ms for its first 500 ms (a cold path), then only a microtask.
  function coldThenHot(): () => Promise<void> {
    const start = performance.now();
    return () => (performance.now() - start < 500 ? new Promise((r) => setTimeout(r, 2)) : Promise.resolve());
  }
  const conns = [{}] as RawHttp[];

  it('goes on past a slow start whose slices agree until minMs, and ends on the fast rate', async () => {
    const w = await warmUp(conns, coldThenHot(), { minMs: 800, maxMs: 5000 });
    expect(w.ms).toBeGreaterThanOrEqual(800);
    expect(w.opsPerSec).toBeGreaterThan(10_000); // the cold path does at most 500/s
  });

  it('stops at maxMs when the rate never holds', async () => {
    // each call waits less than the one before: 20 ms at first, under 1 ms after 900 ms (the rate keeps rising,
    // by a quarter or more a slice even if every timer fired 10 ms late)
    const start = performance.now();
    const op = () => new Promise<void>((r) => setTimeout(r, 20 * Math.max(0, 1 - (performance.now() - start) / 1100) ** 2));
    const w = await warmUp(conns, op, { minMs: 0, maxMs: 1000 });
    expect(w.ms).toBeGreaterThanOrEqual(1000);
    expect(w.ms).toBeLessThan(1500);
  });
});

import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './procs.js';
import type { Summary } from './stats.js';

/** One row of bench/results/latest.json (the shape issue 6 asks for, plus the spread and the goal). */
export interface ScenarioResult {
  name: string;
  metric: string;
  unit: string;
  value: number;
  baseline: string | null;
  baselineValue: number | null;
  /** value / baselineValue. */
  ratio: number | null;
  higherIsBetter: boolean;
  min: number;
  max: number;
  baselineMin: number | null;
  baselineMax: number | null;
  rounds: number;
  /** The goal for this row, e.g. ">= 1.15x", and whether this run met it. */
  goal?: string;
  met?: boolean;
}

export interface Machine {
  cpu: string;
  cores: number;
  node: string;
  kernel: string;
  date: string;
}

export function machine(): Machine {
  let cpu = cpus()[0]?.model ?? 'unknown';
  try {
    cpu = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpu;
  } catch {
    // not Linux
  }
  let kernel = release();
  try {
    kernel = execFileSync('uname', ['-sr'], { encoding: 'utf8' }).trim();
  } catch {
    // keep os.release()
  }
  return { cpu, cores: cpus().length, node: process.version, kernel, date: new Date().toISOString() };
}

/** A goal of issue 6: bounds on the ratio (min: ratio >= 1.15) or on the value itself (maxValue). */
export interface Goal {
  min?: number;
  max?: number;
  maxValue?: number;
}

/** A row from the A (sockctl) and B (baseline) summaries. */
export function row(
  name: string,
  metric: string,
  unit: string,
  a: Summary,
  b: { name: string; summary: Summary } | null,
  higherIsBetter: boolean,
  goal?: Goal,
): ScenarioResult {
  const ratio = b && b.summary.median !== 0 ? a.median / b.summary.median : null;
  const r: ScenarioResult = {
    name,
    metric,
    unit,
    value: round(a.median),
    baseline: b?.name ?? null,
    baselineValue: b ? round(b.summary.median) : null,
    ratio: ratio === null ? null : round(ratio),
    higherIsBetter,
    min: round(a.min),
    max: round(a.max),
    baselineMin: b ? round(b.summary.min) : null,
    baselineMax: b ? round(b.summary.max) : null,
    rounds: a.samples.length,
  };
  if (goal) {
    r.goal = [
      goal.min !== undefined ? `>= ${goal.min}x` : '',
      goal.max !== undefined ? `<= ${goal.max}x` : '',
      goal.maxValue !== undefined ? `<= ${goal.maxValue} ${unit}` : '',
    ]
      .filter(Boolean)
      .join(', ');
    const within = (x: number | null) => (goal.min === undefined && goal.max === undefined) || (x !== null && (goal.min === undefined || x >= goal.min) && (goal.max === undefined || x <= goal.max));
    r.met = within(ratio) && (goal.maxValue === undefined || a.median <= goal.maxValue);
    // a ratio that rounds onto the goal's bound shows the digit that decides it (1.005x, not 1x NOT met)
    for (let digits = 4; ratio !== null && within(r.ratio) !== within(ratio) && digits <= 6; digits++) r.ratio = Number(ratio.toPrecision(digits));
  }
  return r;
}

/** Three significant digits (four for values >= 1000 keep their integer part). */
export function round(x: number): number {
  if (!Number.isFinite(x)) return x;
  if (Math.abs(x) >= 1000) return Math.round(x);
  return Number(x.toPrecision(3));
}

function fmt(x: number | null): string {
  if (x === null || Number.isNaN(x)) return '—';
  return String(x);
}

const HEADERS = ['scenario', 'metric', 'sockctl (median [min–max])', 'baseline', 'baseline (median [min–max])', 'ratio', 'goal'];

function cells(r: ScenarioResult): string[] {
  const goal = r.goal ? `${r.goal} ${r.met ? 'met' : 'NOT met'}` : '';
  return [
    r.name,
    `${r.metric} (${r.unit}, ${r.higherIsBetter ? 'higher' : 'lower'} is better)`,
    `${fmt(r.value)} [${fmt(r.min)}–${fmt(r.max)}]`,
    r.baseline ?? '—',
    r.baselineValue === null ? '—' : `${fmt(r.baselineValue)} [${fmt(r.baselineMin)}–${fmt(r.baselineMax)}]`,
    r.ratio === null ? '—' : `${r.ratio}x`,
    goal,
  ];
}

/** A plain-text table for the terminal. */
export function table(rows: ScenarioResult[]): string {
  const all = [HEADERS, ...rows.map(cells)];
  const widths = HEADERS.map((_, i) => Math.max(...all.map((c) => c[i]!.length)));
  const line = (c: string[]) => c.map((s, i) => s.padEnd(widths[i]!)).join('  ');
  return [line(HEADERS), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map((r) => line(cells(r)))].join('\n');
}

/** The markdown table of bench/RESULTS.md. */
export function markdown(rows: ScenarioResult[], m: Machine, notes: string[], command: string): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  const out = [
    `Latest full run: ${m.date.slice(0, 10)} on ${m.cpu}, ${m.cores} cores, Linux ${m.kernel.replace(/^Linux /, '')}, Node ${m.node}. Reproduce with \`${command}\` (about 5 minutes with websockify installed, 4 without; \`npm run bench -- --quick\` takes under a minute, with noisier figures: goals are judged on full runs). Values are medians over alternating A/B rounds, with [min–max]; the ratio is sockctl / baseline.`,
    '',
    `| ${HEADERS.join(' | ')} |`,
    `|${HEADERS.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${cells(r).map(esc).join(' | ')} |`),
  ];
  if (notes.length) out.push('', ...notes.map((n) => `- ${n}`));
  return out.join('\n') + '\n';
}

/** bench/results/latest.json: `{machine, scenarios: [...]}` as issue 6 gives it, with the mode and the notes. */
export function resultsDocument(rows: ScenarioResult[], m: Machine, notes: string[], full: boolean) {
  return { machine: m, mode: full ? 'full' : 'quick', notes, scenarios: rows };
}

export function writeResults(rows: ScenarioResult[], m: Machine, notes: string[], full: boolean, command: string): string[] {
  const dir = join(ROOT, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const written = [join(dir, 'latest.json')];
  writeFileSync(written[0]!, JSON.stringify(resultsDocument(rows, m, notes, full), null, 2) + '\n');
  if (full) {
    const md = join(ROOT, 'bench', 'RESULTS.md');
    writeFileSync(md, markdown(rows, m, notes, command));
    written.push(md);
  }
  return written;
}

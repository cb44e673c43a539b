import type { IpcChild } from './ipc-child.js';
import type { Proc } from './procs.js';
import type { ScenarioResult } from './report.js';
import type { Service } from './service.js';

/** What every scenario gets from bench/run.ts. */
export interface Ctx {
  quick: boolean;
  /** The sockctl under test for the data-path, latency and control-plane scenarios. */
  service: Service;
  relay: { proc: Proc; port: number };
  /** websockify relaying to the peer's listener, when installed (`which websockify`). */
  websockify: { proc: Proc; port: number } | null;
  /** The TCP peer process (bench/lib/peer.ts). */
  peer: IpcChild;
  log(msg: string): void;
  /** Skips and caveats, printed and written with the results. */
  notes: string[];
}

export type Scenario = (ctx: Ctx) => Promise<ScenarioResult[]>;

/**
 * Runs `a` and `b` alternately, `rounds` times each, in the order A B, B A, A B, ... so that a drift of
 * the machine (thermal, page cache, a neighbour) touches both sides alike.
 */
export async function alternate<T>(rounds: number, a: () => Promise<T>, b: () => Promise<T>): Promise<{ a: T[]; b: T[] }> {
  const out = { a: [] as T[], b: [] as T[] };
  for (let i = 0; i < rounds; i++) {
    if (i % 2 === 0) {
      out.a.push(await a());
      out.b.push(await b());
    } else {
      out.b.push(await b());
      out.a.push(await a());
    }
  }
  return out;
}

/** Like alternate() for several sides: round i runs them rotated by i, so that none always goes first. */
export async function rotate<T>(rounds: number, sides: (() => Promise<T>)[]): Promise<T[][]> {
  const out = sides.map(() => [] as T[]);
  for (let i = 0; i < rounds; i++) {
    for (let k = 0; k < sides.length; k++) {
      const j = (i + k) % sides.length;
      out[j]!.push(await sides[j]!());
    }
  }
  return out;
}

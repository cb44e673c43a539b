/** Small statistics over samples (no dependency). */
export function sorted(xs: readonly number[]): number[] {
  return [...xs].sort((a, b) => a - b);
}

/** The q-quantile (0..1) by linear interpolation between closest ranks. */
export function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = sorted(xs);
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo]! + (s[hi]! - s[lo]!) * (pos - lo);
}

export const median = (xs: readonly number[]) => quantile(xs, 0.5);
export const min = (xs: readonly number[]) => (xs.length ? Math.min(...xs) : NaN);
export const max = (xs: readonly number[]) => (xs.length ? Math.max(...xs) : NaN);

export interface Summary {
  median: number;
  min: number;
  max: number;
  samples: number[];
}

export function summarize(xs: readonly number[]): Summary {
  return { median: median(xs), min: min(xs), max: max(xs), samples: [...xs] };
}

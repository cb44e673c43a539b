/**
 * Milliseconds on CLOCK_MONOTONIC (process.hrtime), which every process of the machine shares: a
 * timestamp taken in the peer process can be compared with one taken in the harness.
 */
export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

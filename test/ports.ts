// A loopback port nobody listens on, for tests that expect ECONNREFUSED. "Bind port 0, close, use that
// port" races: the kernel hands the freed port to the next bind(0) or connect() anywhere on the machine
// (another test file running in parallel, or the next iteration of the same loop), and the refusal becomes
// a connection. The port here comes from outside net.ipv4.ip_local_port_range, where the kernel never
// allocates, and it is checked free for TCP and UDP on 127.0.0.1 and ::1 at the moment it is chosen.
import { readFileSync } from 'node:fs';
import { C, native as N } from '../src/io/native.js';

function ephemeralRange(): [number, number] {
  try {
    const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (Number.isInteger(lo) && Number.isInteger(hi)) return [lo!, hi!];
  } catch {
    // not Linux /proc: the kernel default
  }
  return [32768, 60999];
}

function freeEverywhere(port: number): boolean {
  for (const [family, address] of [[C.AF_INET, '127.0.0.1'], [C.AF_INET6, '::1']] as const) {
    for (const type of [C.SOCK_STREAM, C.SOCK_DGRAM]) {
      const fd = N.socket(family, type, 0);
      try {
        N.bind(fd, { family, address, port });
      } catch {
        return false;
      } finally {
        N.close(fd);
      }
    }
  }
  return true;
}

/** A TCP and UDP loopback port (IPv4 and IPv6) with no socket on it, outside the kernel's ephemeral range. */
export function closedPort(): number {
  const [lo, hi] = ephemeralRange();
  // the unprivileged ports outside the ephemeral range, above the ones the policy tests bind on purpose
  const candidates = [...Array(65536).keys()].filter((p) => p >= 10000 && (p < lo || p > hi));
  for (let i = 0; i < 200; i++) {
    const port = candidates[Math.floor(Math.random() * candidates.length)]!;
    if (freeEverywhere(port)) return port;
  }
  throw new Error('no free loopback port outside the ephemeral range');
}

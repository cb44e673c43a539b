/**
 * The observers of the fan-out scenario, in their own process: N WebSocket clients of /v1/events that
 * count events and check that every event they did not get was announced by a `gap` event. Driven over
 * IPC like bench/lib/peer.ts: `open {url, n}`, `stats`, `close`.
 *
 * Messages are not JSON-parsed (a million a second would be the bottleneck): sockctl serializes `seq`
 * first, so it is read from the text; only `gap` events are parsed.
 */
import { WebSocket } from 'ws';
import { nowMs } from './clock.js';
import { serveHarness } from './child-server.js';

interface Counter {
  ws: WebSocket;
  delivered: number;
  gapEvents: number;
  missed: number;
  /** Events neither delivered nor announced by a gap. */
  unaccounted: number;
  pendingMissed: number;
  expect: number;
  lastMs: number;
  closed: boolean;
}

type Request = { id: number; op: string; [k: string]: unknown };
let observers: Counter[] = [];

function seqOf(text: string): number {
  // {"seq":123,...
  const start = text.indexOf('"seq":') + 6;
  let end = start;
  while (end < text.length && text.charCodeAt(end) >= 48 && text.charCodeAt(end) <= 57) end++;
  return Number(text.slice(start, end));
}

function onMessage(c: Counter, data: Buffer): void {
  c.lastMs = nowMs();
  const text = data.toString();
  if (text.includes('"type":"gap"')) {
    const gap = JSON.parse(text) as { missed: number };
    c.gapEvents++;
    c.missed += gap.missed;
    c.pendingMissed += gap.missed;
    return;
  }
  const seq = seqOf(text);
  if (c.expect !== 0 && seq > c.expect) {
    const hole = seq - c.expect;
    if (hole > c.pendingMissed) c.unaccounted += hole - c.pendingMissed;
  }
  c.pendingMissed = 0;
  c.expect = seq + 1;
  c.delivered++;
}

async function open(url: string, n: number): Promise<void> {
  const opened = Array.from({ length: n }, () => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    const c: Counter = { ws, delivered: 0, gapEvents: 0, missed: 0, unaccounted: 0, pendingMissed: 0, expect: 0, lastMs: 0, closed: false };
    ws.on('message', (d: Buffer) => onMessage(c, d));
    ws.on('close', () => (c.closed = true));
    ws.on('error', () => undefined);
    observers.push(c);
    return new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
  });
  await Promise.all(opened);
}

async function handle(req: Request): Promise<Record<string, unknown>> {
  switch (req.op) {
    case 'open':
      await open(String(req.url), Number(req.n));
      return {};
    case 'stats':
      return {
        observers: observers.map((c) => ({
          delivered: c.delivered,
          gapEvents: c.gapEvents,
          missed: c.missed,
          unaccounted: c.unaccounted,
          lastMs: c.lastMs,
          closed: c.closed,
        })),
        cpu: process.cpuUsage(),
      };
    case 'close':
      for (const c of observers) c.ws.terminate();
      observers = [];
      return {};
    default:
      throw new Error(`unknown op ${req.op}`);
  }
}

serveHarness(handle);

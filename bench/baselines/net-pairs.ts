/**
 * Baseline for the scale scenario: a plain Node `net` process holding PAIRS connected TCP pairs on
 * 127.0.0.1 (one listener; each pair is a client socket and the server's accepted socket), both ends
 * reading (flowing mode), as an application holding idle connections would.
 *
 * Protocol: prints "ready" once idle; on a line "go" on stdin makes the pairs and prints "held N".
 * Env: PAIRS.
 */
import { connect, createServer, type Socket } from 'node:net';
import { createInterface } from 'node:readline';

const pairs = Number(process.env.PAIRS ?? 1000);
const held: Socket[] = [];
const server = createServer((s) => {
  s.on('data', () => undefined);
  held.push(s);
});

async function makePairs(): Promise<void> {
  const { port } = server.address() as { port: number };
  const batch = 200;
  for (let i = 0; i < pairs; i += batch) {
    const n = Math.min(batch, pairs - i);
    await Promise.all(
      Array.from({ length: n }, () => new Promise<void>((resolve, reject) => {
        const c = connect({ host: '127.0.0.1', port }, () => resolve());
        c.on('data', () => undefined);
        c.once('error', reject);
        held.push(c);
      })),
    );
  }
  while (held.length < 2 * pairs) await new Promise((r) => setTimeout(r, 5)); // the accepts
  process.stdout.write(`held ${held.length}\n`);
}

server.listen(0, '127.0.0.1', 1024, () => {
  setTimeout(() => process.stdout.write('ready\n'), 300);
});
createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() === 'go') makePairs().catch((e: unknown) => {
    process.stderr.write(`net-pairs: ${String(e)}\n`);
    process.exit(1);
  });
});
process.on('SIGTERM', () => process.exit(0));

import { connect, type Socket } from 'node:net';
import { within } from './procs.js';

/**
 * A minimal HTTP/1.1 keep-alive client: one connection, one request at a time, responses framed by
 * content-length. The control-plane scenario needs a client much cheaper than the servers it loads,
 * since both share this machine's cores: on the 2-core machines node 20's fetch (undici) peaked at about
 * 2,000 requests/s against the bare fastify route and http.Agent at about 17,000 with more CPU than the
 * server, while this client drives the same route at 35,000-50,000.
 */
export class RawHttp {
  private buf = '';
  private waiting: { resolve: (r: { status: number; body: string }) => void; reject: (e: Error) => void } | undefined;

  private constructor(
    private readonly socket: Socket,
    private readonly headers: string,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('error', (e) => this.fail(e));
    socket.on('close', () => this.fail(new Error('connection closed')));
  }

  static async open(port: number, token?: string): Promise<RawHttp> {
    const socket = connect({ host: '127.0.0.1', port });
    await within(5000, 'http connect', new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    }));
    return new RawHttp(socket, `host: 127.0.0.1:${port}\r\n${token ? `authorization: Bearer ${token}\r\n` : ''}`);
  }

  /** One request; `body` is sent as JSON. Resolves with the status and the body text. */
  request(method: string, path: string, body?: unknown): Promise<{ status: number; body: string }> {
    if (this.waiting) throw new Error('one request at a time');
    const json = body === undefined ? '' : JSON.stringify(body);
    const head = `${method} ${path} HTTP/1.1\r\n${this.headers}${json ? `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(json)}\r\n` : ''}\r\n`;
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
      this.socket.write(head + json);
    });
  }

  /** request() that throws unless the status is 2xx; returns the parsed JSON body. */
  async json<T = any>(method: string, path: string, body?: unknown): Promise<T> {
    const r = await this.request(method, path, body);
    if (r.status < 200 || r.status > 299) throw new Error(`${method} ${path}: ${r.status} ${r.body.slice(0, 200)}`);
    return JSON.parse(r.body) as T;
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(d: Buffer): void {
    this.buf += d.toString('latin1');
    const end = this.buf.indexOf('\r\n\r\n');
    if (end < 0) return;
    const head = this.buf.slice(0, end);
    const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    if (!m) return this.fail(new Error(`response without content-length: ${head.slice(0, 200)}`));
    const len = Number(m[1]);
    if (this.buf.length < end + 4 + len) return;
    const body = Buffer.from(this.buf.slice(end + 4, end + 4 + len), 'latin1').toString('utf8');
    this.buf = this.buf.slice(end + 4 + len);
    const w = this.waiting;
    this.waiting = undefined;
    w?.resolve({ status: Number(head.slice(9, 12)), body });
  }

  private fail(e: Error): void {
    const w = this.waiting;
    this.waiting = undefined;
    w?.reject(e);
  }
}

/**
 * Runs `op` in a loop on each connection until `durationMs` passes or `maxOps` are done in all;
 * returns completed ops per second. `op` returns how many HTTP requests it made.
 */
export async function rate(conns: RawHttp[], durationMs: number, maxOps: number, op: (c: RawHttp, i: number) => Promise<unknown>): Promise<{ opsPerSec: number; ops: number }> {
  let ops = 0;
  const start = performance.now();
  const end = start + durationMs;
  await within(
    durationMs + 30_000,
    'control-plane load',
    Promise.all(
      conns.map(async (c, i) => {
        while (performance.now() < end && ops < maxOps) {
          await op(c, i);
          ops++;
        }
      }),
    ),
  );
  return { opsPerSec: ops / ((performance.now() - start) / 1000), ops };
}

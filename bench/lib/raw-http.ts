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
 *
 * `poll`: the client busy-polls for the whole measure (an immediate always pending keeps libuv's epoll_wait
 * at a zero timeout), so a response never has to wake it. On these VMs a wake-up of a process sleeping on the
 * other vCPU costs the waker an IPI (a VM exit), charged to the server's write of the answer, and how often
 * the client sleeps depends on the server's own speed (0.55-0.58 sleeps per sockctl `recv`, 0.27-0.29 per
 * bare call): with a sleeping client sockctl's `recv` spent 36-38 µs of CPU a call and the bare route 17,
 * with a polling one 25 and 16 (`perf`: the answer's writev went from 13 to 5 µs, its wake-up in
 * sock_def_readable from 6 to 0.5).
 */
export async function rate(
  conns: RawHttp[],
  durationMs: number,
  maxOps: number,
  op: (c: RawHttp, i: number) => Promise<unknown>,
  opts: { poll?: boolean } = {},
): Promise<{ opsPerSec: number; ops: number }> {
  let ops = 0;
  let polling = opts.poll === true;
  const poll = () => {
    if (polling) setImmediate(poll);
  };
  poll();
  const start = performance.now();
  const end = start + durationMs;
  try {
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
  } finally {
    polling = false;
  }
  return { opsPerSec: ops / ((performance.now() - start) / 1000), ops };
}

/**
 * Runs `op` as rate() does, in slices of 200 ms, until two slices in a row agree within 10% (after at least
 * `minMs`, and at most `maxMs` in all). A fresh path runs at a tenth of its speed at first: the service's
 * `send` did 2,600-3,700 calls/s for the first 600 ms and reached 30,000 after about 1 s, whatever ran
 * before it (`recv`, or nothing), so a fixed warm-up either wastes time or ends inside that phase; and two
 * slices inside it can agree, so `minMs` should outlast it.
 */
export async function warmUp(
  conns: RawHttp[],
  op: (c: RawHttp, i: number) => Promise<unknown>,
  opts: { poll?: boolean; minMs: number; maxMs: number },
): Promise<{ ms: number; opsPerSec: number }> {
  const start = performance.now();
  let last = 0;
  for (;;) {
    const { opsPerSec } = await rate(conns, 200, Number.MAX_SAFE_INTEGER, op, opts);
    const ms = performance.now() - start;
    if ((ms >= opts.minMs && Math.abs(opsPerSec - last) <= 0.1 * Math.max(opsPerSec, last)) || ms >= opts.maxMs) return { ms, opsPerSec };
    last = opsPerSec;
  }
}

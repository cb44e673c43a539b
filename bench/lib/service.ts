import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, ROOT, sleep, spawnCommand, spawnNode, waitHttp, waitLine, waitTcp, type Proc } from './procs.js';

export const TOKEN = 'bench-token';

/** A sockctl HTTP error, with its status and body. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
    what: string,
  ) {
    super(`${what}: ${status} ${body.slice(0, 300)}`);
  }
}

export interface SocketRef {
  id: string;
  local: { address: string; port: number } | null;
}

/**
 * The service's per-user quotas and rate limits, raised out of the way: the bench measures the service's
 * cost, and the checks still run on every call. (Variables an older checkout does not know are ignored.)
 */
export const UNLIMITED = {
  SOCKCTL_USER_SOCKETS: '1000000',
  SOCKCTL_USER_LISTENERS: '1000000',
  SOCKCTL_USER_CONNECTS_PER_SECOND: '1000000',
  SOCKCTL_USER_BUFFER_BYTES: String(2 ** 40),
  SOCKCTL_USER_OBSERVERS: '10000',
  SOCKCTL_MAX_OBSERVERS: '10000',
  SOCKCTL_RATE_LIMIT_PER_MINUTE: '1000000000',
};

/** The sockctl checkout under test: this one, or another given with `--service-dir` (an older commit, say). */
let serviceDir = ROOT;
export function setServiceDir(dir: string): void {
  serviceDir = dir;
}

/**
 * How `npm start` runs the service in `dir`: its package.json's start script (`node <flags> <script>`), taken
 * apart, so that the bench starts it with the same Node and V8 flags (`--no-memory-reducer`, say).
 */
export function startCommand(dir: string): { flags: string[]; script: string } {
  const start = (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts.start;
  const [node, ...rest] = start.trim().split(/\s+/);
  const script = rest.pop();
  if (node !== 'node' || !script) throw new Error(`the start script is not "node <flags> <script>": ${start}`);
  return { flags: rest, script };
}

/** A running sockctl process (as `npm start` runs it) and a small client of its API. */
export class Service {
  private constructor(
    readonly proc: Proc,
    readonly port: number,
  ) {}

  get pid(): number {
    return this.proc.pid;
  }

  get base(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Starts the service and waits for /v1/health. `nofile` raises RLIMIT_NOFILE through the shell. */
  static async start(opts: { env?: Record<string, string>; nodeArgs?: string[]; nofile?: number; name?: string } = {}): Promise<Service> {
    const port = await freePort();
    const { flags, script } = startCommand(serviceDir);
    const proc = spawnCommand(opts.name ?? 'sockctl', process.execPath, [...(opts.nodeArgs ?? []), ...flags, script], {
      env: { SOCKCTL_PORT: String(port), SOCKCTL_TOKEN: TOKEN, SOCKCTL_LOG_LEVEL: 'warn', SOCKCTL_HOST: '127.0.0.1', ...UNLIMITED, ...opts.env },
      cwd: serviceDir,
      ...(opts.nofile ? { nofile: opts.nofile } : {}),
    });
    const s = new Service(proc, port);
    await waitHttp(proc, `${s.base}/v1/health`);
    return s;
  }

  /**
   * One API call (set-up and clean-up, not measured); a non-2xx answer throws an ApiError. A 503 with
   * Retry-After (the service shedding load while its event loop lags) is retried for up to 20 s.
   */
  async call<T = any>(method: string, path: string, body?: unknown): Promise<T> {
    const end = Date.now() + 20_000;
    for (;;) {
      const r = await fetch(this.base + path, {
        method,
        headers: { authorization: `Bearer ${TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(60_000),
      });
      const text = await r.text();
      if (r.status === 503 && r.headers.get('retry-after') && Date.now() < end) {
        this.overloaded++;
        await sleep(250);
        continue;
      }
      if (!r.ok) throw new ApiError(r.status, text, `${method} ${path}`);
      return (text ? JSON.parse(text) : undefined) as T;
    }
  }

  /** 503 answers (load shedding) that call() retried. */
  overloaded = 0;

  /** A TCP listener on 127.0.0.1, ephemeral port: create, bind, listen. */
  async listener(label = 'bench', backlog = 511): Promise<SocketRef> {
    const s = await this.call<SocketRef>('POST', '/v1/sockets', { family: 'inet', type: 'stream', label });
    await this.call('POST', `/v1/sockets/${s.id}/bind`, { address: '127.0.0.1', port: 0 });
    return this.call<SocketRef>('POST', `/v1/sockets/${s.id}/listen`, { backlog });
  }

  async accept(listenerId: string): Promise<SocketRef> {
    return this.call<SocketRef>('POST', `/v1/sockets/${listenerId}/accept`, { timeoutMs: 10_000 });
  }

  async close(id: string): Promise<void> {
    await this.call('DELETE', `/v1/sockets/${id}`).catch(() => undefined);
  }

  /** The consumer stream of a socket, binary mode. */
  streamUrl(id: string): string {
    return `ws://127.0.0.1:${this.port}/v1/sockets/${id}/stream?binary=true&token=${TOKEN}`;
  }

  eventsUrl(query = ''): string {
    return `ws://127.0.0.1:${this.port}/v1/events?token=${TOKEN}${query ? `&${query}` : ''}`;
  }

  async stop(): Promise<void> {
    await this.proc.stop(10_000);
  }
}

/** A baseline process that prints "... listening on PORT" (bench/baselines/relay.ts). */
export async function startRelay(): Promise<{ proc: Proc; port: number }> {
  const proc = spawnNode('relay', 'bench/baselines/relay.ts', { env: { RELAY_PORT: '0' } });
  const m = await waitLine(proc, /listening on (\d+)/);
  return { proc, port: Number(m[1]) };
}

/** The bare fastify route (bench/baselines/bare-fastify.ts). */
export async function startBareFastify(): Promise<{ proc: Proc; port: number }> {
  const port = await freePort();
  const proc = spawnNode('bare-fastify', 'bench/baselines/bare-fastify.ts', { env: { BARE_PORT: String(port) } });
  await waitHttp(proc, `http://127.0.0.1:${port}/health`);
  return { proc, port };
}

/**
 * websockify (the Debian package, if installed) relaying WebSocket connections to `target` on
 * 127.0.0.1. Returns null when `which websockify` finds nothing.
 */
export async function startWebsockify(target: number): Promise<{ proc: Proc; port: number } | null> {
  let bin: string;
  try {
    bin = execFileSync('which', ['websockify'], { encoding: 'utf8' }).trim();
  } catch {
    return null;
  }
  if (!bin) return null;
  const port = await freePort();
  const proc = spawnCommand('websockify', bin, [`127.0.0.1:${port}`, `127.0.0.1:${target}`]);
  await waitTcp(proc, port);
  return { proc, port };
}

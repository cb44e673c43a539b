import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance, InjectOptions } from 'fastify';
import { buildApp } from '../src/app.js';
import { loadConfig, type Config } from '../src/config.js';

export const TOKEN = 'test-token';

export interface TestApp {
  app: FastifyInstance;
  unixDir: string;
  /** One HTTP call through app.inject with the bearer token; returns status, JSON body (if any) and headers. */
  call<T = any>(method: InjectOptions['method'], url: string, body?: unknown, headers?: Record<string, string>): Promise<Reply<T>>;
  close(): Promise<void>;
}

export interface Reply<T> {
  status: number;
  body: T;
  raw: Buffer;
  headers: Record<string, unknown>;
}

/** A policy that lets binds and listens use the wildcard address (on top of the loopback-only default). */
export const WILDCARD_BIND_POLICY = {
  default: { bind: { allow: ['127.0.0.0/8', '::1/128', '0.0.0.0/32', '::/128'], ports: ['0', '1024-65535'] } },
};

/**
 * An app on a short private Unix dir, not listening (use app.listen for real clients). `files.policy` and
 * `files.tokens` are written to that dir as SOCKCTL_POLICY_FILE / SOCKCTL_TOKENS_FILE.
 */
export async function startApp(overrides: Partial<Config> = {}, files: { policy?: unknown; tokens?: unknown } = {}): Promise<TestApp> {
  const unixDir = mkdtempSync(join(tmpdir(), 'sc-'));
  const extra: Partial<Config> = {};
  if (files.policy !== undefined) {
    extra.policyFile = join(unixDir, 'policy.json');
    writeFileSync(extra.policyFile, JSON.stringify(files.policy));
  }
  if (files.tokens !== undefined) {
    extra.tokensFile = join(unixDir, 'tokens.json');
    writeFileSync(extra.tokensFile, JSON.stringify(files.tokens));
  }
  // load shedding off and the connect rate high: tests make hundreds of connects a second on a busy machine
  // (both limits have their own tests, which set them)
  const app = await buildApp(
    loadConfig({}, { token: TOKEN, unixDir, maxWaitMs: 5000, maxEventLoopDelayMs: 0, userConnectsPerSecond: 100_000, ...extra, ...overrides }),
    { logger: false },
  );
  await app.ready();
  return {
    app,
    unixDir,
    async call(method, url, body, headers = {}) {
      const r = await app.inject({
        method,
        url,
        headers: { authorization: `Bearer ${TOKEN}`, ...headers },
        ...(body === undefined ? {} : Buffer.isBuffer(body) || typeof body === 'string' ? { payload: body } : { payload: body as object }),
      });
      let parsed: unknown = undefined;
      const type = String(r.headers['content-type'] ?? '');
      if (type.includes('application/json') && r.body.length > 0) parsed = JSON.parse(r.body);
      return { status: r.statusCode, body: parsed as any, raw: r.rawPayload, headers: r.headers };
    },
    async close() {
      await app.close();
      rmSync(unixDir, { recursive: true, force: true });
    },
  };
}

/** Open descriptors of this process. */
export function fdCount(): number {
  return readdirSync('/proc/self/fd').length;
}

/** Waits until `check` returns a truthy value (polling the kernel's view, not sleeping blindly). */
export async function until<T>(check: () => Promise<T> | T, what: string, timeoutMs = 5000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

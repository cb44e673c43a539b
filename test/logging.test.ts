// The service's request logs: a reqId on every line that concerns a request, at every level.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';

const TOKEN = 'logging-test-token-0123456789';
let app: FastifyInstance | undefined;
let dir: string | undefined;

afterEach(async () => {
  await app?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
  app = dir = undefined;
});

/** An app logging at `level` into an array of parsed lines, with a route that fails with a 500. */
async function logged(level: 'info' | 'warn'): Promise<{ app: FastifyInstance; lines: Record<string, unknown>[] }> {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l));
      done();
    },
  });
  dir = mkdtempSync(join(tmpdir(), 'sc-'));
  app = await buildApp(loadConfig({}, { token: TOKEN, unixDir: dir, maxEventLoopDelayMs: 0 }), { logger: { level, stream } });
  app.get('/v1/test-failure', () => {
    throw new Error('a bug');
  });
  await app.ready();
  return { app, lines };
}

const auth = { authorization: `Bearer ${TOKEN}` };

describe('request logs', () => {
  it('at info: both lines of every request carry its reqId', async () => {
    const { app, lines } = await logged('info');
    const r = await app.inject({ method: 'GET', url: '/v1/sockets', headers: auth });
    expect(r.statusCode).toBe(200);
    const mine = lines.filter((l) => l.reqId === lines.find((x) => x.msg === 'incoming request')?.reqId);
    expect(mine.map((l) => l.msg)).toEqual(['incoming request', 'request completed']);
    lines.length = 0;
    expect((await app.inject({ method: 'GET', url: '/v1/test-failure', headers: auth })).statusCode).toBe(500);
    const failed = lines.filter((l) => l.msg === 'request failed');
    expect(failed).toHaveLength(1);
    expect(failed[0]!.reqId).toBe(lines[0]!.reqId);
  });

  it('at warn: nothing for a good request, and a failure names its reqId', async () => {
    const { app, lines } = await logged('warn');
    expect((await app.inject({ method: 'GET', url: '/v1/sockets', headers: auth })).statusCode).toBe(200);
    expect(lines).toEqual([]);
    const r = await app.inject({ method: 'GET', url: '/v1/test-failure', headers: auth });
    expect(r.statusCode).toBe(500);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ msg: 'request failed', code: 'SOCKCTL_INTERNAL', reqId: expect.stringMatching(/\S/) });
    expect((lines[0]!.err as { message: string }).message).toBe('a bug');
  });
});

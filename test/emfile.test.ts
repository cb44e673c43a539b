// A full descriptor table: the service runs with RLIMIT_NOFILE 256 and a socket ceiling above it, so the
// kernel itself answers EMFILE. Each failing call gets 503 with the errno, nothing leaks, and the service
// keeps serving once descriptors are free again.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { closedPort } from './ports.js';

const TOKEN = 'emfile-token';
let child: ChildProcess | undefined;


afterEach(async () => {
  if (child && child.exitCode === null) {
    child.kill('SIGTERM');
    await once(child, 'exit');
  }
  child = undefined;
});

describe('a full file-descriptor table', () => {
  it('answers 503 EMFILE at the failing syscall and recovers', { timeout: 60_000 }, async () => {
    const port = closedPort();
    child = spawn('sh', ['-c', 'ulimit -n 256 && exec node --import tsx src/main.ts'], {
      env: { ...process.env, SOCKCTL_PORT: String(port), SOCKCTL_TOKEN: TOKEN, SOCKCTL_MAX_SOCKETS: '1000', SOCKCTL_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const base = `http://127.0.0.1:${port}/v1`;
    const headers = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
    for (let i = 0; ; i++) {
      try {
        if ((await fetch(`${base}/health`)).ok) break;
      } catch {
        // not listening yet
      }
      if (i > 600 || child.exitCode !== null) throw new Error(`service did not start: ${stderr.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const create = () => fetch(`${base}/sockets`, { method: 'POST', headers, body: JSON.stringify({ family: 'inet', type: 'dgram', label: 'fill' }) });
    let refused: { status: number; body: Record<string, unknown> } | undefined;
    let made = 0;
    for (let i = 0; i < 600 && !refused; i++) {
      const r = await create();
      if (r.status === 201) made++;
      else refused = { status: r.status, body: (await r.json()) as Record<string, unknown> };
    }
    expect(made).toBeGreaterThan(10);
    expect(refused?.status).toBe(503);
    expect(refused?.body).toMatchObject({ statusCode: 503, code: 'EMFILE', errno: 24, syscall: 'socket' });
    // still serving, and the descriptors come back
    expect((await fetch(`${base}/health`)).status).toBe(200);
    const closed = await fetch(`${base}/sockets?label=fill`, { method: 'DELETE', headers: { authorization: headers.authorization } });
    expect(await closed.json()).toEqual({ closed: made });
    for (let i = 0; i < made; i++) expect((await create()).status).toBe(201);
    expect((await create()).status).toBe(503);
  });
});

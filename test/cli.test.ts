// The users command: add prints a fresh token that the service accepts, list never prints tokens,
// remove revokes, and a running service picks the file up again on reload (SIGHUP calls the same reload).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startApp, type TestApp } from './helpers.js';

const users = (...args: string[]) =>
  execFileSync(process.execPath, ['--import', 'tsx', 'src/cli/users.ts', ...args], { encoding: 'utf8' }).trim();

describe('npm run users', () => {
  let dir = '';
  let t: TestApp | undefined;
  afterEach(async () => {
    await t?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('adds, lists, revokes, and the service reloads the file', async () => {
    dir = mkdtempSync(join(tmpdir(), 'sc-cli-'));
    const file = join(dir, 'tokens.json');
    const alice = users('add', 'alice', '--file', file, '--sockets', '3');
    expect(alice).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const listed = users('list', '--file', file);
    expect(listed).toBe('alice\tuser\t{"sockets":3}');
    expect(listed).not.toContain(alice);

    t = await startApp({ tokensFile: file });
    const asAlice = { authorization: `Bearer ${alice}` };
    const r = await t.app.inject({ method: 'GET', url: '/v1/sockets', headers: asAlice });
    expect(r.statusCode).toBe(200);

    const bob = users('add', 'bob', '--file', file);
    expect((await t.app.inject({ method: 'GET', url: '/v1/sockets', headers: { authorization: `Bearer ${bob}` } })).statusCode).toBe(401);
    users('remove', 'alice', '--file', file);
    expect(t.app.users.reload()).toBe(2); // the test admin token and bob
    expect((await t.app.inject({ method: 'GET', url: '/v1/sockets', headers: { authorization: `Bearer ${bob}` } })).statusCode).toBe(200);
    expect((await t.app.inject({ method: 'GET', url: '/v1/sockets', headers: asAlice })).statusCode).toBe(401);
    expect(JSON.parse(readFileSync(file, 'utf8')).users.map((u: { name: string }) => u.name)).toEqual(['bob']);
  });

  it('refuses a duplicate user and an unknown one with exit code 2', () => {
    dir = mkdtempSync(join(tmpdir(), 'sc-cli-'));
    const file = join(dir, 'tokens.json');
    users('add', 'carol', '--file', file);
    expect(() => users('add', 'carol', '--file', file)).toThrow(/exists/);
    expect(() => users('remove', 'nobody', '--file', file)).toThrow(/no user 'nobody'/);
  });
});

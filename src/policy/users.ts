import { hash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Value } from 'typebox/value';
import { TokensFile, type Limits, type UserEntry } from '../../schemas/policy.js';

/** An authenticated user: the tokens-file entry without its token, limits filled from the defaults. */
export interface User {
  name: UserEntry['name'];
  role: UserEntry['role'];
  limits: Required<Limits>;
}

const digest = (s: string) => hash('sha256', s, 'buffer');

/**
 * Bearer tokens → users. `SOCKCTL_TOKEN` is the single-admin shortcut; `SOCKCTL_TOKENS_FILE` adds users
 * and can be reloaded (SIGHUP) without a restart. Tokens are compared in constant time (as digests, so
 * lengths leak nothing either) and never logged.
 */
export class Users {
  private entries: { digest: Buffer; user: User }[] = [];
  private reloads = 0;

  constructor(
    private readonly adminToken: string,
    private readonly file: string,
    private readonly defaults: Required<Limits>,
  ) {
    this.reload();
  }

  /** Rereads the tokens file; on error the previous users stay and the error is thrown. */
  reload(): number {
    const entries: { digest: Buffer; user: User }[] = [];
    if (this.adminToken)
      entries.push({ digest: digest(this.adminToken), user: { name: 'admin', role: 'admin', limits: this.defaults } });
    if (this.file) {
      const parsed: unknown = JSON.parse(readFileSync(this.file, 'utf8'));
      if (!Value.Check(TokensFile, parsed)) {
        const first = [...Value.Errors(TokensFile, parsed)][0];
        throw new Error(`${this.file}: ${first?.instancePath ?? ''} ${first?.message ?? 'invalid'}`);
      }
      const names = new Set<string>();
      for (const u of parsed.users) {
        if (names.has(u.name)) throw new Error(`${this.file}: user '${u.name}' appears twice`);
        // a name is an owner and a directory under SOCKCTL_UNIX_DIR: '.' and '..' would be another's
        if (u.name === '.' || u.name === '..') throw new Error(`${this.file}: '${u.name}' is not a user name`);
        // the SOCKCTL_TOKEN user owns its sockets as 'admin': a second 'admin' would share them
        if (this.adminToken && u.name === 'admin')
          throw new Error(`${this.file}: the name 'admin' belongs to the SOCKCTL_TOKEN user; choose another`);
        names.add(u.name);
        entries.push({ digest: digest(u.token), user: { name: u.name, role: u.role, limits: { ...this.defaults, ...u.limits } } });
      }
    }
    if (entries.length === 0) throw new Error('no users: set SOCKCTL_TOKEN or SOCKCTL_TOKENS_FILE');
    this.entries = entries;
    this.reloads++;
    return entries.length;
  }

  /** Changes with every reload: a token accepted before it must be checked again. */
  get generation(): number {
    return this.reloads;
  }

  /** The user a token belongs to; every entry is compared, so timing says nothing about which matched. */
  authenticate(token: string): User | undefined {
    const d = digest(token);
    let found: User | undefined;
    for (const e of this.entries) if (timingSafeEqual(d, e.digest)) found ??= e.user;
    return found;
  }

  get count(): number {
    return this.entries.length;
  }
}

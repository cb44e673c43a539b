import { mkdirSync, realpathSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { errors } from '../errors.js';
import type { SockAddr } from '../io/native.js';
import type { AddressPolicy, PolicyOp } from './address-policy.js';
import type { User } from './users.js';

/**
 * What the sockets ask before a syscall: the address policy, the connect rate, and where a user's
 * relative Unix paths live (an admin's in SOCKCTL_UNIX_DIR, a user's in a subdirectory of it).
 */
export class Access {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    readonly policy: AddressPolicy,
    private readonly unixDir: string,
  ) {}

  unixDirFor(user: User): string {
    if (user.role === 'admin') return this.unixDir;
    const dir = join(this.unixDir, user.name);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    return dir;
  }

  /**
   * Throws 403 naming the policy rule when `op` on `sa` is denied. A Unix path is judged as written and
   * as the kernel will reach it (symlinks resolved), and a user's paths inside SOCKCTL_UNIX_DIR must lie
   * in the user's own directory (other users' directories are theirs) unless a policy file's
   * `unixPrefixes` opens them explicitly.
   */
  authorize(user: User, op: PolicyOp, sa: SockAddr): void {
    if (!('path' in sa) || sa.path === null || sa.path.startsWith('@')) return this.policy.check(user, op, sa);
    const real = resolvedPath(sa.path);
    for (const path of real === sa.path ? [sa.path] : [sa.path, real]) {
      const candidate = { ...sa, path };
      this.policy.check(user, op, candidate);
      if (user.role === 'admin' || !this.inside(path, this.unixDir)) continue;
      const home = this.unixDirFor(user);
      if (this.inside(path, home)) continue;
      // allowed so far only by the built-in prefix (the whole SOCKCTL_UNIX_DIR): not for a user
      const d = this.policy.decide(user, op, candidate);
      if (d.rule.startsWith('builtin.'))
        throw errors.forbidden(`${op} denied by policy rule builtin.unixHome: '${path}' is outside the user's directory ${home}`);
    }
  }

  /** `path` is `dir` or below it, `dir` taken as written and with its symlinks resolved. */
  private inside(path: string, dir: string): boolean {
    const dirs = [dir];
    try {
      dirs.push(realpathSync(dir));
    } catch {
      // not there (yet): as written
    }
    return dirs.some((d) => path === d || path.startsWith(d.endsWith('/') ? d : `${d}/`));
  }

  mayUseRaw(user: User): boolean {
    return this.policy.mayUseRaw(user);
  }

  /** A token bucket per user: `connectsPerSecond`, with a burst of the same size. */
  takeConnect(user: User): void {
    const rate = user.limits.connectsPerSecond;
    const now = Date.now();
    const b = this.buckets.get(user.name) ?? { tokens: rate, at: now };
    b.tokens = Math.min(rate, b.tokens + ((now - b.at) / 1000) * rate);
    b.at = now;
    this.buckets.set(user.name, b);
    if (b.tokens < 1) throw errors.quota(`connect rate over ${rate}/s for user '${user.name}'`);
    b.tokens -= 1;
  }
}

/**
 * The path the kernel will reach: every symlink resolved (connect follows a final symlink too; bind
 * creates the last component but follows the directories above it). Components that do not exist yet
 * are kept as written below the deepest existing one.
 */
function resolvedPath(path: string): string {
  const rest: string[] = [];
  let p = path;
  for (;;) {
    try {
      return join(realpathSync(p), ...rest);
    } catch {
      if (p === dirname(p)) return path;
      rest.unshift(basename(p));
      p = dirname(p);
    }
  }
}

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
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

  /** Throws 403 naming the policy rule when `op` on `sa` is denied. */
  authorize(user: User, op: PolicyOp, sa: SockAddr): void {
    this.policy.check(user, op, sa);
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

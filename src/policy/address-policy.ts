import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';
import { Value } from 'typebox/value';
import { PolicyFile, type OpRule, type Rules } from '../../schemas/policy.js';
import { errors } from '../errors.js';
import type { SockAddr } from '../io/native.js';
import { ipv6Bytes } from '../sockets/addresses.js';
import type { User } from './users.js';

export type PolicyOp = 'bind' | 'connect' | 'sendto';

export interface Decision {
  allowed: boolean;
  /** The rule that decided, e.g. "default.connect.allow" or "users.alice.bind.deny[0]". */
  rule: string;
  reason: string;
}

const LOOPBACK_ONLY: OpRule = { allow: ['127.0.0.0/8', '::1/128'], ports: ['0', '1024-65535'] };

/** The safe defaults (issue 5): loopback only, no privileged ports, no raw sockets, no abstract names. */
export function defaultRules(opts: { allowRaw: boolean; allowAbstract: boolean; unixPrefixes: string[] }): Rules {
  return {
    bind: LOOPBACK_ONLY,
    connect: LOOPBACK_ONLY,
    sendto: LOOPBACK_ONLY,
    unixPrefixes: opts.unixPrefixes,
    abstract: opts.allowAbstract,
    raw: opts.allowRaw,
  };
}

interface Resolved {
  rules: Rules;
  /** Where each field came from, for naming the deciding rule. */
  source: Record<keyof Rules, string>;
}

/**
 * Who may bind, connect and send to which address, checked before any syscall. Addresses are classified
 * from the kernel's numeric form (net.isIP already refused anything inet_pton would not take), with
 * IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) judged as the IPv4 address they reach.
 */
export class AddressPolicy {
  private file: PolicyFile = {};

  constructor(
    private readonly defaults: Rules,
    private readonly path: string,
  ) {
    this.reload();
  }

  reload(): void {
    if (!this.path) return;
    const parsed: unknown = JSON.parse(readFileSync(this.path, 'utf8'));
    if (!Value.Check(PolicyFile, parsed)) {
      const first = [...Value.Errors(PolicyFile, parsed)][0];
      throw new Error(`${this.path}: ${first?.instancePath ?? ''} ${first?.message ?? 'invalid'}`);
    }
    for (const [name, rules] of allRules(parsed))
      for (const op of ['bind', 'connect', 'sendto'] as const) {
        try {
          validateRule(rules[op]);
        } catch (e) {
          throw new Error(`${this.path}: ${name}.${op}: ${(e as Error).message}`);
        }
      }
    this.file = parsed;
  }

  /** The decision for one operation on one address. */
  decide(user: User, op: PolicyOp, sa: SockAddr): Decision {
    const { rules, source } = this.resolve(user);
    if ('path' in sa) return this.decideUnix(rules, source, sa.path);
    const rule = rules[op];
    const where = `${source[op]}.${op}`;
    if (!rule) return { allowed: false, rule: where, reason: `no ${op} rule` };
    if (isIP(sa.address) === 0) return { allowed: false, rule: where, reason: `'${sa.address}' is not a numeric address` };
    let addr = parseLiteral(sa.address);
    if (addr.kind() === 'ipv6' && (addr as ipaddr.IPv6).isIPv4MappedAddress()) addr = (addr as ipaddr.IPv6).toIPv4Address();
    const shown = addr.toString();
    for (const [i, cidr] of (rule.deny ?? []).entries())
      if (matches(addr, cidr)) return { allowed: false, rule: `${where}.deny[${i}]`, reason: `${shown} is in ${cidr}` };
    const allowed = (rule.allow ?? []).findIndex((cidr) => matches(addr, cidr));
    if (allowed < 0)
      return { allowed: false, rule: `${where}.allow`, reason: `${shown} is not in ${(rule.allow ?? []).join(', ') || 'any allowed range'}` };
    if (rule.ports && !rule.ports.some((r) => inPortRange(sa.port, r)))
      return { allowed: false, rule: `${where}.ports`, reason: `port ${sa.port} is not in ${rule.ports.join(', ')}` };
    return { allowed: true, rule: `${where}.allow[${allowed}]`, reason: 'allowed' };
  }

  /** Throws 403 SOCKCTL_FORBIDDEN naming the rule when the decision is a denial. */
  check(user: User, op: PolicyOp, sa: SockAddr): void {
    const d = this.decide(user, op, sa);
    if (!d.allowed) throw errors.forbidden(`${op} denied by policy rule ${d.rule}: ${d.reason}`);
  }

  mayUseRaw(user: User): boolean {
    return this.resolve(user).rules.raw === true;
  }

  private decideUnix(rules: Rules, source: Resolved['source'], path: string | null): Decision {
    if (path === null) return { allowed: true, rule: 'unix.unnamed', reason: 'unnamed' };
    if (path.startsWith('@'))
      return rules.abstract
        ? { allowed: true, rule: `${source.abstract}.abstract`, reason: 'allowed' }
        : { allowed: false, rule: `${source.abstract}.abstract`, reason: `the abstract namespace ('${path}') is disabled` };
    const prefixes = rules.unixPrefixes ?? [];
    const ok = prefixes.findIndex((p) => path === p || path.startsWith(p.endsWith('/') ? p : p + '/'));
    return ok >= 0
      ? { allowed: true, rule: `${source.unixPrefixes}.unixPrefixes[${ok}]`, reason: 'allowed' }
      : { allowed: false, rule: `${source.unixPrefixes}.unixPrefixes`, reason: `'${path}' is outside ${prefixes.join(', ')}` };
  }

  /** default ← role ← user, field by field. */
  private resolve(user: User): Resolved {
    const layers: [string, Rules | undefined][] = [
      ['builtin', this.defaults],
      ['default', this.file.default],
      [`roles.${user.role}`, this.file.roles?.[user.role]],
      [`users.${user.name}`, this.file.users?.[user.name]],
    ];
    const rules: Rules = {};
    const source = {} as Record<keyof Rules, string>;
    for (const [name, layer] of layers) {
      if (!layer) continue;
      for (const key of Object.keys(layer) as (keyof Rules)[]) {
        (rules as Record<string, unknown>)[key] = layer[key];
        source[key] = name;
      }
    }
    return { rules, source };
  }
}

function allRules(f: PolicyFile): [string, Rules][] {
  const out: [string, Rules | undefined][] = [
    ['default', f.default],
    ['roles.admin', f.roles?.admin],
    ['roles.user', f.roles?.user],
    ...Object.entries(f.users ?? {}).map(([name, r]): [string, Rules] => [`users.${name}`, r]),
  ];
  return out.filter((e): e is [string, Rules] => !!e[1]);
}

/**
 * An address literal as the kernel reads it (inet_pton). Not `ipaddr.parse`: ipaddr.js reads the
 * IPv4-compatible "::a.b.c.d" as the IPv4-mapped "::ffff:a.b.c.d", so "::127.0.0.1" would pass for
 * loopback while the kernel sends it to ::7f00:1 along the IPv6 routes.
 */
function parseLiteral(address: string): ipaddr.IPv4 | ipaddr.IPv6 {
  return address.includes(':') ? ipaddr.fromByteArray([...ipv6Bytes(address)]) : ipaddr.IPv4.parse(address);
}

/** "a.b.c.d/n" or "x::y/n" with a numeric address inet_pton takes and a prefix length that fits it. */
function parseCidr(cidr: string): [ipaddr.IPv4 | ipaddr.IPv6, number] {
  const slash = cidr.lastIndexOf('/');
  const address = slash < 0 ? '' : cidr.slice(0, slash);
  const bits = slash < 0 ? NaN : Number(cidr.slice(slash + 1));
  const version = isIP(address);
  if (version === 0 || !/^\d{1,3}$/.test(cidr.slice(slash + 1)) || bits > (version === 4 ? 32 : 128))
    throw new Error(`'${cidr}' is not a CIDR range (address/prefix-length, e.g. 127.0.0.0/8 or ::1/128)`);
  return [parseLiteral(address), bits];
}

function validateRule(rule: OpRule | undefined): void {
  for (const cidr of [...(rule?.allow ?? []), ...(rule?.deny ?? [])]) parseCidr(cidr); // throws on a bad one
  for (const range of rule?.ports ?? []) {
    const [lo, hi = lo] = range.split('-').map(Number);
    if (!(lo! <= hi! && hi! <= 65535)) throw new Error(`'${range}' is not a port range (0-65535, low-high)`);
  }
}

function matches(addr: ipaddr.IPv4 | ipaddr.IPv6, cidr: string): boolean {
  const [range, bits] = parseCidr(cidr);
  let r = range;
  // an IPv4 rule also covers the IPv4-mapped spelling of its addresses (and the reverse)
  if (addr.kind() !== r.kind()) {
    if (r.kind() === 'ipv6' && (r as ipaddr.IPv6).isIPv4MappedAddress() && bits >= 96) r = (r as ipaddr.IPv6).toIPv4Address();
    else return false;
  }
  return addr.match(r, r.kind() === range.kind() ? bits : bits - 96);
}

function inPortRange(port: number, range: string): boolean {
  const [lo, hi = lo] = range.split('-').map(Number);
  return port >= lo! && port <= hi!;
}

import type { OptionName, SocketOptions } from '../../schemas/options.js';
import { TYPES } from '../../schemas/socket.js';
import { isErrno } from '../errors.js';
import { C, native, type ConstantName } from '../io/native.js';

type Kind = 'bool' | 'int' | 'ms' | 'linger' | 'type';
interface OptionSpec {
  level: ConstantName;
  name: ConstantName;
  kind: Kind;
  readOnly?: boolean;
  /** Families the option exists for (getsockopt elsewhere is noise: ENOPROTOOPT/EOPNOTSUPP). */
  families?: readonly number[];
  /** Socket types for which the option is listed (TCP_* only on streams of inet families). */
  types?: readonly number[];
}

const INET = () => [C.AF_INET, C.AF_INET6];
const TCP = () => ({ level: 'IPPROTO_TCP' as const, families: INET(), types: [C.SOCK_STREAM] });

/** Level, number and value kind of each option, keyed by the names of schemas/options.ts. */
function specs(): Record<OptionName, OptionSpec> {
  const sol = (name: ConstantName, kind: Kind, readOnly = false): OptionSpec => ({ level: 'SOL_SOCKET', name, kind, readOnly });
  return {
    SO_REUSEADDR: sol('SO_REUSEADDR', 'bool'),
    SO_REUSEPORT: sol('SO_REUSEPORT', 'bool'),
    SO_KEEPALIVE: sol('SO_KEEPALIVE', 'bool'),
    SO_BROADCAST: sol('SO_BROADCAST', 'bool'),
    SO_DONTROUTE: sol('SO_DONTROUTE', 'bool'),
    SO_OOBINLINE: sol('SO_OOBINLINE', 'bool'),
    SO_RCVBUF: sol('SO_RCVBUF', 'int'),
    SO_SNDBUF: sol('SO_SNDBUF', 'int'),
    SO_RCVLOWAT: sol('SO_RCVLOWAT', 'int'),
    SO_PRIORITY: sol('SO_PRIORITY', 'int'),
    SO_LINGER: sol('SO_LINGER', 'linger'),
    SO_RCVTIMEO: sol('SO_RCVTIMEO', 'ms'),
    SO_SNDTIMEO: sol('SO_SNDTIMEO', 'ms'),
    SO_TYPE: sol('SO_TYPE', 'type', true),
    SO_ERROR: sol('SO_ERROR', 'int', true),
    SO_ACCEPTCONN: sol('SO_ACCEPTCONN', 'bool', true),
    TCP_NODELAY: { ...TCP(), name: 'TCP_NODELAY', kind: 'bool' },
    TCP_CORK: { ...TCP(), name: 'TCP_CORK', kind: 'bool' },
    TCP_QUICKACK: { ...TCP(), name: 'TCP_QUICKACK', kind: 'bool' },
    TCP_MAXSEG: { ...TCP(), name: 'TCP_MAXSEG', kind: 'int' },
    TCP_KEEPIDLE: { ...TCP(), name: 'TCP_KEEPIDLE', kind: 'int' },
    TCP_KEEPINTVL: { ...TCP(), name: 'TCP_KEEPINTVL', kind: 'int' },
    TCP_KEEPCNT: { ...TCP(), name: 'TCP_KEEPCNT', kind: 'int' },
    TCP_USER_TIMEOUT: { ...TCP(), name: 'TCP_USER_TIMEOUT', kind: 'int' },
    IP_TTL: { level: 'IPPROTO_IP', name: 'IP_TTL', kind: 'int', families: [C.AF_INET] },
    IP_TOS: { level: 'IPPROTO_IP', name: 'IP_TOS', kind: 'int', families: [C.AF_INET] },
    IP_MULTICAST_TTL: { level: 'IPPROTO_IP', name: 'IP_MULTICAST_TTL', kind: 'int', families: [C.AF_INET], types: [C.SOCK_DGRAM] },
    IP_MULTICAST_LOOP: { level: 'IPPROTO_IP', name: 'IP_MULTICAST_LOOP', kind: 'bool', families: [C.AF_INET], types: [C.SOCK_DGRAM] },
    IPV6_V6ONLY: { level: 'IPPROTO_IPV6', name: 'IPV6_V6ONLY', kind: 'bool', families: [C.AF_INET6] },
    IPV6_UNICAST_HOPS: { level: 'IPPROTO_IPV6', name: 'IPV6_UNICAST_HOPS', kind: 'int', families: [C.AF_INET6] },
    IPV6_MULTICAST_HOPS: { level: 'IPPROTO_IPV6', name: 'IPV6_MULTICAST_HOPS', kind: 'int', families: [C.AF_INET6], types: [C.SOCK_DGRAM] },
  };
}

let cached: Record<OptionName, OptionSpec> | undefined;
const table = () => (cached ??= specs());

function readOne(fd: number, spec: OptionSpec): unknown {
  const level = C[spec.level];
  const name = C[spec.name];
  switch (spec.kind) {
    case 'bool':
      return native.getsockoptInt(fd, level, name) !== 0;
    case 'int':
      return native.getsockoptInt(fd, level, name);
    case 'ms':
      return native.getsockoptTimeval(fd, level, name);
    case 'linger':
      return native.getsockoptLinger(fd);
    case 'type': {
      const t = native.getsockoptInt(fd, level, name);
      return TYPES.find((n) => C[n] === t) ?? String(t);
    }
  }
}

/** Every option that applies to the socket, as the kernel reports it now (SO_ERROR is cleared by reading). */
export function readOptions(fd: number, domain: number, type: number): SocketOptions {
  const out: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(table()) as [OptionName, OptionSpec][]) {
    if (spec.families && !spec.families.includes(domain)) continue;
    if (spec.types && !spec.types.includes(type)) continue;
    try {
      out[key] = readOne(fd, spec);
    } catch (e) {
      if (!isErrno(e, 'ENOPROTOOPT', 'EOPNOTSUPP', 'EINVAL')) throw e;
    }
  }
  return out as SocketOptions;
}

/** The names in `values` that cannot be set (read-only). */
export function readOnlyNames(values: SocketOptions): OptionName[] {
  return (Object.keys(values) as OptionName[]).filter((k) => table()[k].readOnly);
}

/**
 * Sets one option with one setsockopt(2); the kernel's error (EINVAL, ENOPROTOOPT, EOPNOTSUPP) comes
 * through unchanged.
 */
export function writeOption(fd: number, key: OptionName, value: unknown): void {
  const spec = table()[key];
  const level = C[spec.level];
  const name = C[spec.name];
  switch (spec.kind) {
    case 'bool':
      return native.setsockoptInt(fd, level, name, value ? 1 : 0);
    case 'int':
      return native.setsockoptInt(fd, level, name, value as number);
    case 'ms':
      return native.setsockoptTimeval(fd, level, name, value as number);
    case 'linger':
      return native.setsockoptLinger(fd, value as { onoff: boolean; linger: number });
    case 'type':
      throw new Error(`${key} is read-only`);
  }
}

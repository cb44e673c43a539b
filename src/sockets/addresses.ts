import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { isAbsolute, resolve } from 'node:path';
import type { AddressInput, SockaddrView, SocketAddress } from '../../schemas/address.js';
import { errors } from '../errors.js';
import { C, type SockAddr } from '../io/native.js';

/** sun_path holds 108 bytes, the terminating NUL included. */
export const SUN_PATH_MAX = 107;

/** Where a user's relative Unix paths resolve (who may use which path is the policy's business). */
export interface UnixPathRules {
  unixDir: string;
}

/** `{address, port}` → the kernel's sockaddr_in / sockaddr_in6, or a 400 naming what is wrong. */
export function inetSockAddr(input: AddressInput): SockAddr {
  if (input.path !== undefined) throw errors.badRequest(`an inet socket takes {address, port}, not a path`);
  if (input.address === undefined || input.port === undefined)
    throw errors.badRequest(`an inet socket takes {address, port}; both are required`);
  const [host, scope] = splitScope(input.address);
  const version = isIP(host);
  if (version === 0) throw errors.badRequest(`'${input.address}' is not an IPv4 or IPv6 address`);
  if (version === 4) {
    if (scope !== undefined) throw errors.badRequest(`an IPv4 address has no scope: '${input.address}'`);
    return { family: C.AF_INET, address: host, port: input.port };
  }
  return { family: C.AF_INET6, address: host, port: input.port, scopeId: scope === undefined ? 0 : scopeId(scope) };
}

function splitScope(address: string): [string, string | undefined] {
  const i = address.indexOf('%');
  return i < 0 ? [address, undefined] : [address.slice(0, i), address.slice(i + 1)];
}

function scopeId(scope: string): number {
  if (/^\d+$/.test(scope)) return Number(scope);
  if (/^[A-Za-z0-9_.-]{1,15}$/.test(scope)) {
    try {
      return Number(readFileSync(`/sys/class/net/${scope}/ifindex`, 'utf8').trim());
    } catch {
      // fall through
    }
  }
  throw errors.badRequest(`unknown IPv6 scope '%${scope}'`);
}

/** `{path}` → sockaddr_un: relative paths resolve in the user's directory; too long a path is a 400. */
export function unixSockAddr(input: AddressInput, rules: UnixPathRules): SockAddr {
  if (input.path === undefined || input.address !== undefined || input.port !== undefined)
    throw errors.badRequest(`a Unix socket takes {path}, not {address, port}`);
  const raw = input.path;
  if (raw.includes('\0')) throw errors.badRequest('a Unix path cannot contain NUL bytes');
  if (raw.startsWith('@')) {
    if (Buffer.byteLength(raw) > SUN_PATH_MAX + 1)
      throw errors.badRequest(`abstract name '${raw}' is longer than sun_path allows (107 bytes)`);
    return { family: C.AF_UNIX, path: raw };
  }
  const path = isAbsolute(raw) ? resolve(raw) : resolve(rules.unixDir, raw);
  const bytes = Buffer.byteLength(path);
  if (bytes > SUN_PATH_MAX)
    throw errors.badRequest(
      `Unix path '${path}' is ${bytes} bytes; sun_path holds at most ${SUN_PATH_MAX} plus the terminating NUL`,
    );
  return { family: C.AF_UNIX, path };
}

/** The kernel's address as the wire shows it. */
export function wireAddress(sa: SockAddr): SocketAddress {
  if ('path' in sa) return { path: sa.path };
  const scoped = sa.scopeId ? `${sa.address}%${sa.scopeId}` : sa.address;
  return { address: scoped, port: sa.port };
}

/**
 * getsockname of an unbound socket: inet port 0 (bind always assigns a port), or an unnamed Unix socket.
 * A raw socket has no port: Linux reports its protocol number there from socket() on (0.0.0.0:1 for
 * ICMP), so only a bound address tells that it was bound.
 */
export function isUnbound(sa: SockAddr, raw = false): boolean {
  if ('path' in sa) return sa.path === null;
  if (raw) return sa.address === '0.0.0.0' || sa.address === '::';
  return sa.port === 0;
}

/** "127.0.0.1:6666", "[::1]:80", "/tmp/x", "(unnamed)" for messages. */
export function describe(sa: SockAddr | AddressInput): string {
  if ('path' in sa && sa.path !== undefined) return sa.path ?? '(unnamed)';
  const a = sa as { address?: string; port?: number };
  return a.address?.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

/** The raw struct sockaddr bytes, as a C program would pass them to bind(2) (DESIGN.md section 3). */
export function sockaddrView(sa: SockAddr): SockaddrView {
  const hex = (b: Buffer) => [...b].map((x) => x.toString(16).padStart(2, '0')).join(' ');
  const fields: Record<string, string> = {};
  let buf: Buffer;
  let struct: string;
  if ('path' in sa) {
    struct = 'sockaddr_un';
    const name = sa.path === null ? Buffer.alloc(0) : sa.path.startsWith('@')
      ? Buffer.concat([Buffer.from([0]), Buffer.from(sa.path.slice(1))])
      : Buffer.concat([Buffer.from(sa.path), Buffer.from([0])]);
    buf = Buffer.alloc(2 + name.length);
    buf.writeUInt16LE(sa.family, 0);
    name.copy(buf, 2);
    fields.sun_family = `AF_UNIX (${sa.family}, host byte order) = ${hex(buf.subarray(0, 2))}`;
    fields.sun_path = sa.path === null ? '(unnamed: addrlen = sizeof(sa_family_t))' : hex(name);
  } else if (sa.family === C.AF_INET) {
    struct = 'sockaddr_in';
    buf = Buffer.alloc(16);
    buf.writeUInt16LE(sa.family, 0);
    buf.writeUInt16BE(sa.port, 2);
    sa.address.split('.').forEach((o, i) => buf.writeUInt8(Number(o), 4 + i));
    fields.sin_family = `AF_INET (${sa.family}, host byte order) = ${hex(buf.subarray(0, 2))}`;
    fields.sin_port = `htons(${sa.port}) = ${hex(buf.subarray(2, 4))}`;
    fields.sin_addr = `inet_pton("${sa.address}") = ${hex(buf.subarray(4, 8))}`;
    fields.sin_zero = hex(buf.subarray(8, 16));
  } else {
    struct = 'sockaddr_in6';
    buf = Buffer.alloc(28);
    buf.writeUInt16LE(sa.family, 0);
    buf.writeUInt16BE(sa.port, 2);
    buf.writeUInt32BE(sa.flowinfo ?? 0, 4);
    ipv6Bytes(sa.address).copy(buf, 8);
    buf.writeUInt32LE(sa.scopeId ?? 0, 24);
    fields.sin6_family = `AF_INET6 (${sa.family}, host byte order) = ${hex(buf.subarray(0, 2))}`;
    fields.sin6_port = `htons(${sa.port}) = ${hex(buf.subarray(2, 4))}`;
    fields.sin6_flowinfo = hex(buf.subarray(4, 8));
    fields.sin6_addr = `inet_pton("${sa.address}") = ${hex(buf.subarray(8, 24))}`;
    fields.sin6_scope_id = `${sa.scopeId ?? 0} (host byte order) = ${hex(buf.subarray(24, 28))}`;
  }
  return { struct, hex: hex(buf).replaceAll(' ', ''), length: buf.length, fields };
}

/** The 16 bytes of an IPv6 literal (inet_pton), an embedded IPv4 tail included. */
export function ipv6Bytes(address: string): Buffer {
  // an embedded IPv4 tail ("::ffff:127.0.0.1") becomes two hex groups first
  const text = address.replace(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/, (_m, a, b, c, d) =>
    `${((Number(a) << 8) | Number(b)).toString(16)}:${((Number(c) << 8) | Number(d)).toString(16)}`,
  );
  const groups = (s: string) => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  const [head = '', rest] = text.split('::');
  const h = groups(head);
  const r = rest === undefined ? [] : groups(rest);
  const all = [...h, ...Array<number>(8 - h.length - r.length).fill(0), ...r];
  const out = Buffer.alloc(16);
  all.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  return out;
}

import { unlinkSync } from 'node:fs';
import type { AddressInput } from '../../schemas/address.js';
import {
  FAMILY_ALIASES,
  PROTOCOL_ALIASES,
  PROTOCOLS as PROTOCOL_LIST,
  TYPE_ALIASES,
  type Family,
  type Protocol,
  type SocketType,
} from '../../schemas/socket.js';
import { errors } from '../errors.js';
import { C, type SockAddr } from '../io/native.js';
import { inetSockAddr, unixSockAddr, type UnixPathRules } from './addresses.js';

/**
 * What differs between address families, behind one interface: how a request's address becomes the
 * kernel's, and what to clean up after a socket of the family closes.
 */
export interface FamilyBehaviour {
  readonly family: Family;
  readonly domain: number;
  /** A request's address → the kernel's; throws 400/403 before any syscall. */
  toSockAddr(input: AddressInput): SockAddr;
  /** Called after a successful bind with the kernel's name; returns a cleanup for close, if any. */
  boundCleanup(local: SockAddr): (() => void) | undefined;
}

export function familyBehaviour(family: Family, rules: UnixPathRules): FamilyBehaviour {
  switch (family) {
    case 'AF_INET':
    case 'AF_INET6':
      return { family, domain: C[family], toSockAddr: inetSockAddr, boundCleanup: () => undefined };
    case 'AF_UNIX':
      return {
        family,
        domain: C.AF_UNIX,
        toSockAddr: (input) => unixSockAddr(input, rules),
        // The service unlinks the paths it bound (a documented deviation from C, DESIGN.md section 3).
        boundCleanup: (local) => {
          const path = 'path' in local ? local.path : null;
          if (path === null || path.startsWith('@')) return undefined;
          return () => {
            try {
              unlinkSync(path);
            } catch {
              // already gone: nothing to clean
            }
          };
        },
      };
  }
}

export function normalizeFamily(input: string): Family {
  return (FAMILY_ALIASES as Record<string, Family>)[input] ?? (input as Family);
}

export function normalizeType(input: string): SocketType {
  return (TYPE_ALIASES as Record<string, SocketType>)[input] ?? (input as SocketType);
}

export function normalizeProtocol(input: string | number | undefined): Exclude<Protocol, 0> | 0 {
  if (input === undefined || input === 0) return 0;
  return (PROTOCOL_ALIASES as Record<string, Exclude<Protocol, 0>>)[input] ?? (input as Exclude<Protocol, 0>);
}

const PROTOCOLS = PROTOCOL_LIST.filter((p): p is Exclude<Protocol, 0> => p !== '0');

export function protocolNumber(p: Protocol): number {
  return p === 0 ? 0 : C[p];
}

/** The kernel's SO_PROTOCOL number → its name (0 for AF_UNIX). */
export function protocolName(n: number): Protocol {
  return PROTOCOLS.find((name) => C[name] === n) ?? 0;
}

export function typeNumber(t: SocketType): number {
  return C[t];
}

/** A combination the service refuses before asking the kernel (a clear 400 or 403 instead of a bare errno). */
export function checkCombination(family: Family, type: SocketType, protocol: Protocol, rawAllowed: boolean): void {
  if (type === 'SOCK_RAW') {
    if (family === 'AF_UNIX') throw errors.badRequest('AF_UNIX has no SOCK_RAW');
    if (!rawAllowed) throw errors.forbidden('raw sockets are disabled (SOCKCTL_ALLOW_RAW)');
    const icmp = family === 'AF_INET' ? 'IPPROTO_ICMP' : 'IPPROTO_ICMPV6';
    if (protocol === 0) throw errors.badRequest(`a raw ${family} socket needs a protocol: ${icmp}`);
    // raw TCP/UDP would let a user read every segment of the host; ICMP on the wrong family is meaningless
    if (protocol !== icmp)
      throw errors.badRequest(`a raw ${family} socket takes ${icmp} (ICMP echo to loopback), not ${protocol}`);
  }
}

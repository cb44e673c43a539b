import { Type, type Static } from 'typebox';
import { ref } from './common.js';

/**
 * Socket options by their C names (DESIGN.md section 3): flags are booleans, sizes and counts integers,
 * SO_LINGER is `{onoff, linger}`, SO_RCVTIMEO/SO_SNDTIMEO are milliseconds. Read-only options are marked
 * `readOnly`. Their levels and numbers live in src/sockets/options.ts, keyed by these names.
 */
export const Linger = Type.Object(
  { onoff: Type.Boolean(), linger: Type.Integer({ minimum: 0, maximum: 65535, description: 'seconds' }) },
  { $id: 'Linger', additionalProperties: false },
);
export type Linger = Static<typeof Linger>;

const flag = (description?: string) => Type.Optional(Type.Boolean(description ? { description } : {}));
const int = (description?: string) =>
  Type.Optional(Type.Integer({ minimum: -1, maximum: 2 ** 31 - 1, ...(description ? { description } : {}) }));
const ms = () => Type.Optional(Type.Integer({ minimum: 0, maximum: 2 ** 31 - 1, description: 'milliseconds; 0 = none' }));

export const SocketOptions = Type.Object(
  {
    SO_REUSEADDR: flag(),
    SO_REUSEPORT: flag(),
    SO_KEEPALIVE: flag(),
    SO_BROADCAST: flag(),
    SO_DONTROUTE: flag(),
    SO_OOBINLINE: flag(),
    SO_RCVBUF: int('bytes (the kernel doubles what is set)'),
    SO_SNDBUF: int('bytes (the kernel doubles what is set)'),
    SO_RCVLOWAT: int(),
    SO_PRIORITY: int(),
    SO_LINGER: Type.Optional(ref(Linger)),
    SO_RCVTIMEO: ms(),
    SO_SNDTIMEO: ms(),
    SO_TYPE: Type.Optional(Type.String({ readOnly: true, description: 'SOCK_STREAM, SOCK_DGRAM, ...' })),
    SO_ERROR: Type.Optional(Type.Integer({ readOnly: true, description: 'pending errno; reading clears it' })),
    SO_ACCEPTCONN: Type.Optional(Type.Boolean({ readOnly: true })),
    TCP_NODELAY: flag(),
    TCP_CORK: flag(),
    TCP_QUICKACK: flag(),
    TCP_MAXSEG: int(),
    TCP_KEEPIDLE: int('seconds'),
    TCP_KEEPINTVL: int('seconds'),
    TCP_KEEPCNT: int(),
    TCP_USER_TIMEOUT: int('milliseconds'),
    IP_TTL: int(),
    IP_TOS: int(),
    IP_MULTICAST_TTL: int(),
    IP_MULTICAST_LOOP: flag(),
    IPV6_V6ONLY: flag(),
    IPV6_UNICAST_HOPS: int(),
    IPV6_MULTICAST_HOPS: int(),
  },
  { $id: 'SocketOptions', additionalProperties: false },
);
export type SocketOptions = Static<typeof SocketOptions>;
export type OptionName = keyof SocketOptions;

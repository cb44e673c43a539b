import { Type, type Static } from 'typebox';
import { SocketAddress, SockaddrView } from './address.js';
import { ref } from './common.js';

export const FAMILIES = ['AF_INET', 'AF_INET6', 'AF_UNIX'] as const;
export const TYPES = ['SOCK_STREAM', 'SOCK_DGRAM', 'SOCK_SEQPACKET', 'SOCK_RAW'] as const;
export const PROTOCOLS = ['IPPROTO_TCP', 'IPPROTO_UDP', 'IPPROTO_ICMP', 'IPPROTO_ICMPV6', '0'] as const;
export const STATES = ['created', 'bound', 'listening', 'connecting', 'connected', 'closed'] as const;

/** Request spellings: the POSIX names and their short aliases (responses always use the POSIX names). */
export const FAMILY_ALIASES = { inet: 'AF_INET', inet6: 'AF_INET6', unix: 'AF_UNIX', AF_LOCAL: 'AF_UNIX' } as const;
export const TYPE_ALIASES = { stream: 'SOCK_STREAM', dgram: 'SOCK_DGRAM', seqpacket: 'SOCK_SEQPACKET', raw: 'SOCK_RAW' } as const;
export const PROTOCOL_ALIASES = { tcp: 'IPPROTO_TCP', udp: 'IPPROTO_UDP', icmp: 'IPPROTO_ICMP', icmpv6: 'IPPROTO_ICMPV6' } as const;

export const Family = Type.Enum(FAMILIES, { $id: 'Family' });
export type Family = Static<typeof Family>;
export const SocketType = Type.Enum(TYPES, { $id: 'SocketType' });
export type SocketType = Static<typeof SocketType>;
export const Protocol = Type.Union([Type.Enum(PROTOCOLS.filter((p) => p !== '0')), Type.Literal(0)], { $id: 'Protocol' });
export type Protocol = Static<typeof Protocol>;
export const SocketState = Type.Enum(STATES, { $id: 'SocketState' });
export type SocketState = Static<typeof SocketState>;

export const FamilyInput = Type.Enum([...FAMILIES, ...Object.keys(FAMILY_ALIASES)] as (keyof typeof FAMILY_ALIASES | Family)[]);
export const TypeInput = Type.Enum([...TYPES, ...Object.keys(TYPE_ALIASES)] as (keyof typeof TYPE_ALIASES | SocketType)[]);
export const ProtocolInput = Type.Union([
  Type.Enum([...PROTOCOLS.filter((p) => p !== '0'), ...Object.keys(PROTOCOL_ALIASES)] as (
    | keyof typeof PROTOCOL_ALIASES
    | Exclude<Protocol, 0>
  )[]),
  Type.Literal(0),
]);

export const SocketStats = Type.Object(
  {
    bytesSent: Type.Integer(),
    bytesReceived: Type.Integer(),
    messagesSent: Type.Integer(),
    messagesReceived: Type.Integer(),
  },
  { $id: 'SocketStats' },
);
export type SocketStats = Static<typeof SocketStats>;

export const AsyncError = Type.Object(
  {
    code: Type.String(),
    errno: Type.Integer(),
    syscall: Type.String(),
    message: Type.String(),
  },
  { $id: 'AsyncError', description: 'an errno the kernel reported for this socket' },
);
export type AsyncError = Static<typeof AsyncError>;

export const KernelView = Type.Object(
  {
    tcpState: Type.Optional(Type.String({ description: 'TCP state: ESTABLISHED, SYN_SENT, LISTEN, TIME_WAIT, ...' })),
    tcpStateSource: Type.Optional(Type.Enum(['tcp_info', 'proc'])),
    rttUs: Type.Optional(Type.Integer()),
    rttVarUs: Type.Optional(Type.Integer()),
    rtoUs: Type.Optional(Type.Integer()),
    sndCwnd: Type.Optional(Type.Integer()),
    sndMss: Type.Optional(Type.Integer()),
    retransmits: Type.Optional(Type.Integer()),
    totalRetrans: Type.Optional(Type.Integer()),
    unacked: Type.Optional(Type.Integer()),
    recvQueue: Type.Optional(Type.Integer({ description: 'bytes waiting to be read (SIOCINQ)' })),
    sendQueue: Type.Optional(Type.Integer({ description: 'bytes not yet acknowledged / sent (SIOCOUTQ)' })),
    acceptQueue: Type.Optional(Type.Integer({ description: "a listener's connections waiting for accept" })),
    backlog: Type.Optional(Type.Integer()),
    drops: Type.Optional(Type.Integer({ description: 'datagrams the kernel dropped (UDP)' })),
  },
  { $id: 'KernelView', description: "the kernel's view of the socket, read at each request" },
);
export type KernelView = Static<typeof KernelView>;

export const Socket = Type.Object(
  {
    id: Type.String(),
    fd: Type.Integer({ description: 'the descriptor number (the last one, once closed)' }),
    family: ref(Family),
    type: ref(SocketType),
    protocol: ref(Protocol),
    state: ref(SocketState),
    local: Type.Union([ref(SocketAddress), Type.Null()]),
    remote: Type.Union([ref(SocketAddress), Type.Null()]),
    shutdown: Type.Object({ read: Type.Boolean(), write: Type.Boolean() }),
    listener: Type.Union([Type.String(), Type.Null()]),
    backlog: Type.Union([Type.Integer(), Type.Null()]),
    pending: Type.Union([Type.Integer(), Type.Null()]),
    label: Type.Union([Type.String(), Type.Null()]),
    createdAt: Type.String({ format: 'date-time' }),
    closedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
    closeReason: Type.Union([Type.String(), Type.Null()]),
    stats: ref(SocketStats),
    lastError: Type.Union([ref(AsyncError), Type.Null()]),
    kernel: ref(KernelView),
    sockaddr: Type.Optional(
      Type.Object({
        local: Type.Union([ref(SockaddrView), Type.Null()]),
        remote: Type.Union([ref(SockaddrView), Type.Null()]),
      }),
    ),
  },
  { $id: 'Socket' },
);
export type Socket = Static<typeof Socket>;

export const SocketList = Type.Object(
  {
    items: Type.Array(ref(Socket), { description: 'oldest first' }),
    next: Type.Union([Type.String(), Type.Null()], { description: 'pass as `after` for the next page; null on the last one' }),
  },
  { $id: 'SocketList' },
);
export type SocketList = Static<typeof SocketList>;

export const SocketPair = Type.Object({ sockets: Type.Array(ref(Socket), { minItems: 2, maxItems: 2 }) }, { $id: 'SocketPair' });
export type SocketPair = Static<typeof SocketPair>;

import { Type, type Static } from 'typebox';
import { addressFields, AddressInput, SocketAddress } from './address.js';
import { Encoding, ref, TimeoutMs } from './common.js';
import { FamilyInput, ProtocolInput, SocketState, TypeInput } from './socket.js';
import { SocketOptions } from './options.js';

export const CreateSocketBody = Type.Object(
  {
    family: FamilyInput,
    type: TypeInput,
    protocol: Type.Optional(ProtocolInput),
    label: Type.Optional(Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9._:-]+$' })),
    options: Type.Optional(ref(SocketOptions)),
  },
  { $id: 'CreateSocketBody', additionalProperties: false },
);
export type CreateSocketBody = Static<typeof CreateSocketBody>;

/** Sockets per page of GET /v1/sockets, at most and by default: one page costs the event loop tens of ms, not seconds. */
export const LIST_PAGE_MAX = 1000;

export const ListQuery = Type.Object(
  {
    state: Type.Optional(ref(SocketState)),
    label: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: LIST_PAGE_MAX, description: `sockets per page (default ${LIST_PAGE_MAX})` })),
    after: Type.Optional(Type.String({ pattern: '^[0-9]{1,15}$', description: 'the `next` of the previous page' })),
  },
  { additionalProperties: false },
);

export const GetQuery = Type.Object(
  { view: Type.Optional(Type.Enum(['sockaddr'], { description: 'add the raw sockaddr bytes' })) },
  { additionalProperties: false },
);

export const DeleteQuery = Type.Object(
  { reset: Type.Optional(Type.Boolean({ description: 'close with SO_LINGER 0: the peer sees RST' })) },
  { additionalProperties: false },
);

export const BulkDeleteQuery = Type.Object(
  {
    label: Type.String({ minLength: 1, maxLength: 128 }),
    reset: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

export const BulkDeleteResult = Type.Object({ closed: Type.Integer() }, { $id: 'BulkDeleteResult' });

export const ListenBody = Type.Object(
  { backlog: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535, description: 'default 128' })) },
  { $id: 'ListenBody', additionalProperties: false },
);
export type ListenBody = Static<typeof ListenBody>;

export const AcceptBody = Type.Object(
  { timeoutMs: Type.Optional(TimeoutMs) },
  { $id: 'AcceptBody', additionalProperties: false },
);
export type AcceptBody = Static<typeof AcceptBody>;

export const ConnectBody = Type.Object(
  { ...addressFields, timeoutMs: Type.Optional(TimeoutMs) },
  { $id: 'ConnectBody', additionalProperties: false, description: '{address, port} or {path}, and timeoutMs' },
);
export type ConnectBody = Static<typeof ConnectBody>;

export const SEND_FLAGS = ['MSG_OOB', 'MSG_DONTROUTE', 'MSG_DONTWAIT', 'MSG_MORE', 'MSG_EOR', 'MSG_CONFIRM'] as const;

export const SendBody = Type.Object(
  {
    data: Type.String({ maxLength: 64 * 1024 * 1024 }),
    encoding: Type.Optional(ref(Encoding)),
    to: Type.Optional(ref(AddressInput)),
    flags: Type.Optional(Type.Array(Type.Enum(SEND_FLAGS), { maxItems: 8, uniqueItems: true })),
    timeoutMs: Type.Optional(TimeoutMs),
  },
  { $id: 'SendBody', additionalProperties: false },
);
export type SendBody = Static<typeof SendBody>;

/** A raw (application/octet-stream) send: the options go in the query. */
export const SendQuery = Type.Object(
  {
    ...addressFields,
    timeoutMs: Type.Optional(TimeoutMs),
    flags: Type.Optional(Type.String({ description: 'comma-separated MSG_* names', maxLength: 128 })),
  },
  { additionalProperties: false },
);
export type SendQuery = Static<typeof SendQuery>;

export const SendResult = Type.Object({ bytes: Type.Integer() }, { $id: 'SendResult' });
export type SendResult = Static<typeof SendResult>;

export const RecvBody = Type.Object(
  {
    maxBytes: Type.Optional(Type.Integer({ minimum: 0, description: 'default 65536' })),
    timeoutMs: Type.Optional(TimeoutMs),
    peek: Type.Optional(Type.Boolean({ description: 'MSG_PEEK' })),
    waitAll: Type.Optional(Type.Boolean({ description: 'MSG_WAITALL: wait for maxBytes or EOF' })),
    encoding: Type.Optional(ref(Encoding)),
  },
  { $id: 'RecvBody', additionalProperties: false },
);
export type RecvBody = Static<typeof RecvBody>;

export const RecvResult = Type.Object(
  {
    data: Type.String(),
    encoding: ref(Encoding),
    bytes: Type.Integer(),
    eof: Type.Boolean(),
    from: Type.Optional(Type.Union([ref(SocketAddress), Type.Null()])),
    truncated: Type.Optional(Type.Boolean({ description: 'MSG_TRUNC: the datagram was longer than maxBytes' })),
  },
  { $id: 'RecvResult' },
);
export type RecvResult = Static<typeof RecvResult>;

export const SHUTDOWN_HOWS = ['SHUT_RD', 'SHUT_WR', 'SHUT_RDWR'] as const;
export const ShutdownBody = Type.Object(
  { how: Type.Enum(SHUTDOWN_HOWS) },
  { $id: 'ShutdownBody', additionalProperties: false },
);
export type ShutdownBody = Static<typeof ShutdownBody>;

export const SocketPairBody = Type.Object(
  {
    type: TypeInput,
    label: CreateSocketBody.properties.label,
  },
  { $id: 'SocketPairBody', additionalProperties: false },
);
export type SocketPairBody = Static<typeof SocketPairBody>;

export const Health = Type.Object(
  { status: Type.Literal('ok'), uptimeMs: Type.Integer(), sockets: Type.Integer(), version: Type.String() },
  { $id: 'Health' },
);
export type Health = Static<typeof Health>;

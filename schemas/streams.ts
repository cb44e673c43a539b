import { Type, type Static } from 'typebox';
import { SocketAddress } from './address.js';
import { Encoding, ENCODINGS, ref } from './common.js';
import { SHUTDOWN_HOWS } from './operations.js';

export const StreamQuery = Type.Object(
  {
    binary: Type.Optional(Type.Boolean({ description: 'data as binary frames' })),
    encoding: Type.Optional(ref(Encoding)),
    autoAccept: Type.Optional(Type.Boolean({ description: 'on a listener: accept each connection' })),
    offset: Type.Optional(Type.Integer({ minimum: 0, description: 'resume from this byte of the input' })),
    token: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);
export type StreamQuery = Static<typeof StreamQuery>;

/** Text frames a consumer sends. */
export const ClientOp = Type.Union(
  [
    Type.Object({ op: Type.Literal('send'), data: Type.String(), encoding: Type.Optional(Type.Enum(ENCODINGS)) }),
    Type.Object({ op: Type.Literal('shutdown'), how: Type.Enum(SHUTDOWN_HOWS) }),
    Type.Object({ op: Type.Literal('close') }),
  ],
  { $id: 'ClientOp' },
);
export type ClientOp = Static<typeof ClientOp>;

export const EventsQuery = Type.Object(
  {
    socket: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    label: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
    data: Type.Optional(Type.Boolean({ description: 'add copies of data in and out' })),
    encoding: Type.Optional(ref(Encoding)),
    after: Type.Optional(Type.Integer({ minimum: 0, description: 'replay events with seq > after' })),
    token: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);
export type EventsQuery = Static<typeof EventsQuery>;

const base = {
  seq: Type.Integer({ description: 'grows across the whole service' }),
  ts: Type.String({ format: 'date-time' }),
  socket: Type.String({ description: "the socket's id ('*' for gap)" }),
};

/** Every event type of the streams (DESIGN.md section 5), published in openapi/ for clients. */
export const StreamEvent = Type.Union(
  [
    Type.Object({ ...base, type: Type.Literal('created'), family: Type.String(), socketType: Type.String(), protocol: Type.Unknown(), state: Type.String(), label: Type.Union([Type.String(), Type.Null()]), listener: Type.Union([Type.String(), Type.Null()]) }),
    Type.Object({ ...base, type: Type.Literal('state'), state: Type.String(), previous: Type.String() }),
    Type.Object({ ...base, type: Type.Literal('accepted'), child: Type.String(), remote: Type.Unknown() }),
    Type.Object({
      ...base,
      type: Type.Literal('data'),
      offset: Type.Integer(),
      bytes: Type.Integer(),
      data: Type.Optional(Type.String()),
      encoding: Type.Optional(ref(Encoding)),
      from: Type.Optional(Type.Union([ref(SocketAddress), Type.Null()], { description: 'datagram sockets: the sender' })),
      truncated: Type.Optional(Type.Boolean({ description: 'datagram sockets: MSG_TRUNC' })),
    }),
    Type.Object({ ...base, type: Type.Literal('sent'), offset: Type.Integer(), bytes: Type.Integer(), data: Type.Optional(Type.String()), encoding: Type.Optional(ref(Encoding)) }),
    Type.Object({ ...base, type: Type.Literal('eof'), offset: Type.Integer() }),
    Type.Object({ ...base, type: Type.Literal('shutdown'), how: Type.Enum(SHUTDOWN_HOWS) }),
    Type.Object({ ...base, type: Type.Literal('error'), code: Type.String(), errno: Type.Optional(Type.Integer()), syscall: Type.Optional(Type.String()), message: Type.String(), op: Type.Optional(Type.String()) }),
    Type.Object({ ...base, type: Type.Literal('closed'), reason: Type.String(), reset: Type.Boolean() }),
    Type.Object({ ...base, type: Type.Literal('gap'), missed: Type.Integer() }),
    Type.Object({ ...base, type: Type.Literal('tcp'), state: Type.String(), previous: Type.Union([Type.String(), Type.Null()]) }),
    Type.Object({ ...base, type: Type.Literal('dropped'), dropped: Type.Integer(), total: Type.Integer() }),
    Type.Object({ ...base, type: Type.Literal('pending'), pending: Type.Integer(), backlog: Type.Union([Type.Integer(), Type.Null()]) }),
  ],
  { $id: 'StreamEvent' },
);

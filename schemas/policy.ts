import { Type, type Static } from 'typebox';

/** Per-user limits; unset fields take the config defaults. */
export const Limits = Type.Object(
  {
    sockets: Type.Optional(Type.Integer({ minimum: 0, description: 'open sockets at once' })),
    listeners: Type.Optional(Type.Integer({ minimum: 0, description: 'listening sockets at once' })),
    connectsPerSecond: Type.Optional(Type.Number({ minimum: 0 })),
    bufferBytes: Type.Optional(Type.Integer({ minimum: 0, description: 'bytes held for the user in stream buffers' })),
    observers: Type.Optional(Type.Integer({ minimum: 0, description: 'event streams at once' })),
  },
  { additionalProperties: false },
);
export type Limits = Static<typeof Limits>;

export const ROLES = ['admin', 'user'] as const;

export const UserEntry = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9._-]+$' }),
    token: Type.String({ minLength: 16, maxLength: 256 }),
    role: Type.Enum(ROLES),
    limits: Type.Optional(Limits),
  },
  { additionalProperties: false },
);
export type UserEntry = Static<typeof UserEntry>;

/** SOCKCTL_TOKENS_FILE. */
export const TokensFile = Type.Object({ users: Type.Array(UserEntry) }, { additionalProperties: false });
export type TokensFile = Static<typeof TokensFile>;

/** Where one operation may go: CIDR allow/deny lists and port ranges ("1024-65535", "0", "8080"). */
export const OpRule = Type.Object(
  {
    allow: Type.Optional(Type.Array(Type.String(), { description: 'CIDR ranges allowed ("127.0.0.0/8", "::1/128")' })),
    deny: Type.Optional(Type.Array(Type.String(), { description: 'CIDR ranges denied, checked first' })),
    ports: Type.Optional(Type.Array(Type.String({ pattern: '^\\d+(-\\d+)?$' }), { description: 'port ranges allowed' })),
  },
  { additionalProperties: false },
);
export type OpRule = Static<typeof OpRule>;

export const Rules = Type.Object(
  {
    bind: Type.Optional(OpRule),
    connect: Type.Optional(OpRule),
    sendto: Type.Optional(OpRule),
    /** Unix path prefixes allowed besides the user's own directory under SOCKCTL_UNIX_DIR. */
    unixPrefixes: Type.Optional(Type.Array(Type.String({ pattern: '^/' }))),
    abstract: Type.Optional(Type.Boolean()),
    raw: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type Rules = Static<typeof Rules>;

/** SOCKCTL_POLICY_FILE: rules merged default ← role ← user (later ones replace whole fields). */
export const PolicyFile = Type.Object(
  {
    default: Type.Optional(Rules),
    roles: Type.Optional(Type.Object({ admin: Type.Optional(Rules), user: Type.Optional(Rules) }, { additionalProperties: false })),
    users: Type.Optional(Type.Record(Type.String(), Rules)),
  },
  { additionalProperties: false },
);
export type PolicyFile = Static<typeof PolicyFile>;

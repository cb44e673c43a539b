import { Type, type Static, type TSchema, type TUnsafe } from 'typebox';

/**
 * A reference to a shared schema (registered once with `addSchema`, shown once in openapi/), typed as the
 * schema it points at.
 */
export function ref<T extends TSchema>(schema: T): TUnsafe<Static<T>> {
  const id = (schema as { $id?: unknown }).$id;
  if (typeof id !== 'string') throw new Error('ref() needs a schema with an $id');
  return Type.Unsafe<Static<T>>(Type.Ref(id));
}

export const ErrorResponse = Type.Object(
  {
    statusCode: Type.Integer(),
    error: Type.String(),
    code: Type.String({ description: 'errno name for a syscall failure (EADDRINUSE), else a service code' }),
    message: Type.String(),
    errno: Type.Optional(Type.Integer({ description: 'errno number, syscall failures only' })),
    syscall: Type.Optional(Type.String({ description: 'the failing syscall, syscall failures only' })),
    socket: Type.Optional(Type.String({ description: 'id of the socket concerned' })),
  },
  { $id: 'ErrorResponse', description: 'Every failure: HTTP status, errno name and number, the failing syscall' },
);
export type ErrorResponse = Static<typeof ErrorResponse>;

/** The error responses every route declares. */
export const errorResponses = {
  '4xx': ref(ErrorResponse),
  '5xx': ref(ErrorResponse),
} as const;

export const ENCODINGS = ['utf8', 'base64', 'hex'] as const;
export const Encoding = Type.Enum(ENCODINGS, { $id: 'Encoding', description: 'how bytes are written in JSON' });
export type Encoding = Static<typeof Encoding>;

export const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });

export const TimeoutMs = Type.Integer({
  minimum: 0,
  description: 'how long to wait; 0 = non-blocking; default and cap SOCKCTL_MAX_WAIT_MS',
});

import type { FastifyInstance, FastifyRequest } from 'fastify';
import { errors } from '../errors.js';
import type { User, Users } from '../policy/users.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated user (every route but the public ones). */
    user: User;
  }
}

const PUBLIC = [/^\/v1\/health(?:\?|$)/, /^\/docs(?:\/|\?|$)/];

/** The bearer token of a request: the Authorization header, or `?token=` for browsers' WebSocket/SSE. */
function presentedToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (header) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    return m?.[1];
  }
  const q = (request.query as Record<string, unknown> | undefined)?.token;
  const upgrade = request.headers.upgrade?.toLowerCase() === 'websocket';
  const sse = request.headers.accept?.includes('text/event-stream') ?? false;
  return (upgrade || sse) && typeof q === 'string' ? q : undefined;
}

/**
 * Whether `given` is `known`, in a time that depends on `given`'s length only (the length the client chose):
 * a keep-alive connection behind a pooling proxy may carry other clients' requests after a user's.
 */
function sameToken(known: string, given: string): boolean {
  let diff = known.length ^ given.length;
  for (let i = 0; i < given.length; i++) diff |= known.charCodeAt(i % known.length) ^ given.charCodeAt(i);
  return diff === 0;
}

/**
 * Every route but health and the docs needs a user's token. Checked at preParsing: after every onRequest
 * hook (security headers, the Host and Origin checks, the CORS preflight answer when origins are allowed,
 * which then apply to a 401 too and let a browser's preflight through) and before any body is read.
 * A keep-alive connection that presents the token it last authenticated with, with no reload since, is
 * not hashed again (Users.authenticate: a sha256, a compare per user and a buffer, a few µs of a call's 40).
 */
export function installAuth(app: FastifyInstance, users: Users): void {
  app.decorateRequest('user', null as unknown as User);
  const lastOnConnection = new WeakMap<object, { token: string; user: User; generation: number }>();
  app.addHook('preParsing', (request, reply, _payload, done) => {
    if (PUBLIC.some((re) => re.test(request.url))) return done();
    const given = presentedToken(request);
    let user: User | undefined;
    if (given !== undefined && given.length > 0) {
      const connection = request.raw.socket;
      const last = connection ? lastOnConnection.get(connection) : undefined;
      if (last && last.generation === users.generation && sameToken(last.token, given)) user = last.user;
      else {
        user = users.authenticate(given);
        if (user && connection) lastOnConnection.set(connection, { token: given, user, generation: users.generation });
      }
    }
    if (!user) {
      reply.header('www-authenticate', 'Bearer realm="sockctl"');
      return done(errors.unauthorized());
    }
    request.user = user;
    done();
  });
}

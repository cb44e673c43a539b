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
 * Every route but health and the docs needs a user's token. Checked at preParsing: after every onRequest
 * hook (security headers, the CORS preflight answer, the Host and Origin checks, which then apply to a
 * 401 too and let a browser's preflight through) and before any body is read.
 */
export function installAuth(app: FastifyInstance, users: Users): void {
  app.decorateRequest('user', null as unknown as User);
  app.addHook('preParsing', (request, reply, _payload, done) => {
    if (PUBLIC.some((re) => re.test(request.url))) return done();
    const given = presentedToken(request);
    const user = given === undefined ? undefined : users.authenticate(given);
    if (!user) {
      reply.header('www-authenticate', 'Bearer realm="sockctl"');
      return done(errors.unauthorized());
    }
    request.user = user;
    done();
  });
}

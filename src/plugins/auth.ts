import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { errors } from '../errors.js';

const PUBLIC = [/^\/v1\/health(?:\?|$)/, /^\/docs(?:\/|\?|$)/];

const digest = (s: string) => createHash('sha256').update(s).digest();

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

/** Every route but health and the docs needs the token; compared in constant time. */
export function installAuth(app: FastifyInstance, token: string): void {
  const expected = digest(token);
  app.addHook('onRequest', async (request, reply) => {
    if (PUBLIC.some((re) => re.test(request.url))) return;
    const given = presentedToken(request);
    if (given === undefined || !timingSafeEqual(digest(given), expected)) {
      reply.header('www-authenticate', 'Bearer realm="sockctl"');
      throw errors.unauthorized();
    }
  });
}

import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { SockctlError, statusText, type ErrorBody } from '../errors.js';

/** Fastify's own failures, by code, with the status the contract gives them. */
const FASTIFY_STATUS: Record<string, number> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 413,
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 415,
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 400,
  FST_ERR_CTP_EMPTY_JSON_BODY: 400,
  FST_ERR_CTP_INVALID_JSON_BODY: 400,
};

/** Any thrown error → the one error shape of DESIGN.md section 4. */
export function toErrorBody(err: FastifyError | Error): ErrorBody {
  if (err instanceof SockctlError) return err.toJSON();
  const fe = err as FastifyError;
  if (fe.validation) {
    return { statusCode: 400, error: statusText(400), code: 'FST_ERR_VALIDATION', message: fe.message };
  }
  const status = FASTIFY_STATUS[fe.code] ?? (fe.statusCode && fe.statusCode >= 400 && fe.statusCode < 500 ? fe.statusCode : undefined);
  if (status !== undefined) {
    const code = fe.code ?? (err instanceof SyntaxError ? 'FST_ERR_CTP_INVALID_JSON_BODY' : 'SOCKCTL_BAD_REQUEST');
    return { statusCode: status, error: statusText(status), code, message: fe.message };
  }
  return { statusCode: 500, error: statusText(500), code: 'SOCKCTL_INTERNAL', message: 'internal error' };
}

/** Whether Node took the request as an upgrade (Connection: upgrade; its `upgrade` flag, untyped). */
export const isUpgrade = (request: FastifyRequest): boolean => (request.raw as { upgrade?: boolean }).upgrade === true;

/**
 * An upgrade request answered with an error: its socket belongs to no HTTP server (Node handed it over at
 * 'upgrade'), so nothing else would close it. Closed once the answer is flushed.
 */
function closeRefusedUpgrade(request: FastifyRequest, reply: FastifyReply): void {
  if (!isUpgrade(request)) return;
  const socket = request.raw.socket;
  reply.raw.once('finish', () => socket.end(() => socket.destroy()));
}

export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError, request, reply) => {
    closeRefusedUpgrade(request, reply);
    const body = toErrorBody(err);
    // below info a request logs through the root logger, with no reqId of its own (app.ts childLoggerFactory)
    const reqId = request.log === app.log ? { reqId: request.id } : {};
    if (body.statusCode >= 500) request.log.error({ err, code: body.code, ...reqId }, 'request failed');
    else request.log.info({ code: body.code, statusCode: body.statusCode }, body.message);
    return reply.status(body.statusCode).send(body);
  });
  app.setNotFoundHandler((request, reply) => {
    closeRefusedUpgrade(request, reply);
    const body: ErrorBody = {
      statusCode: 404,
      error: statusText(404),
      code: 'FST_ERR_NOT_FOUND',
      message: `Route ${request.method}:${request.url.split('?')[0]} not found`,
    };
    return reply.status(404).send(body);
  });
}

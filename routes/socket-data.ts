import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { errorResponses, IdParams, ref } from '../schemas/common.js';
import { RecvBody, RecvResult, SendBody, SendQuery, SendResult } from '../schemas/operations.js';
import { decode, encode } from '../src/codec.js';
import { errors } from '../src/errors.js';
import type { Received } from '../src/sockets/managed-socket.js';
import { sendFlags } from '../src/sockets/flags.js';

const OCTETS = 'application/octet-stream';

/** Header form of a sender: "127.0.0.1:5000", "[::1]:5000", a path, or "" for an unnamed one. */
function fromHeader(from: Received['from']): string {
  if (!from) return '';
  if ('path' in from) return from.path ?? '';
  return from.address.includes(':') ? `[${from.address}]:${from.port}` : `${from.address}:${from.port}`;
}

/** send/sendto and recv/recvfrom, with JSON bodies or raw octets. */
const socketData: FastifyPluginAsyncTypebox = async (app) => {
  const tags = ['data'];

  app.post(
    '/v1/sockets/:id/send',
    {
      schema: {
        tags,
        operationId: 'send',
        summary: 'send(2)/sendto(2): JSON {data, encoding, to}, or raw octets with to/timeoutMs in the query',
        params: IdParams,
        querystring: SendQuery,
        body: {
          content: {
            'application/json': { schema: ref(SendBody) },
            [OCTETS]: { schema: Type.Unsafe<Buffer>({ type: 'string', format: 'binary' }) },
          },
        },
        response: { 200: ref(SendResult), ...errorResponses },
      },
    },
    async (request) => {
      const socket = app.registry.get(request.params.id, request.user);
      const q = request.query;
      const raw = Buffer.isBuffer(request.body);
      const hasQueryAddress = q.address !== undefined || q.port !== undefined || q.path !== undefined;
      let bytes: number;
      if (raw) {
        const { timeoutMs, flags, ...to } = q;
        bytes = await socket.send(request.body as Buffer, {
          to: hasQueryAddress ? to : undefined,
          flags: sendFlags(flags ? flags.split(',').map((f) => f.trim()) : []),
          timeoutMs,
        });
      } else {
        if (Object.keys(q).length > 0) throw errors.badRequest('with a JSON body, put to/timeoutMs/flags in the body, not the query');
        const body = request.body as SendBody;
        bytes = await socket.send(decode(body.data, body.encoding), {
          to: body.to,
          flags: sendFlags(body.flags ?? []),
          timeoutMs: body.timeoutMs,
        });
      }
      return { bytes };
    },
  );

  app.post(
    '/v1/sockets/:id/recv',
    {
      schema: {
        tags,
        operationId: 'recv',
        summary: 'recv(2)/recvfrom(2); raw octets when asked with Accept: application/octet-stream',
        params: IdParams,
        body: ref(RecvBody),
        response: {
          200: {
            content: {
              'application/json': { schema: ref(RecvResult) },
              [OCTETS]: { schema: Type.Unsafe<Buffer>({ type: 'string', format: 'binary' }) },
            },
          },
          ...errorResponses,
        },
      },
    },
    async (request, reply) => {
      const socket = app.registry.get(request.params.id, request.user);
      const body = request.body ?? {};
      const r = await socket.recv(body);
      if (request.headers.accept?.includes(OCTETS)) {
        reply.header('content-type', OCTETS).header('sockctl-eof', String(r.eof));
        if (r.from !== undefined) reply.header('sockctl-from', fromHeader(r.from));
        if (r.truncated !== undefined) reply.header('sockctl-truncated', String(r.truncated));
        return reply.send(r.data);
      }
      const encoding = body.encoding ?? 'utf8';
      const out: RecvResult = { data: encode(r.data, encoding), encoding, bytes: r.data.length, eof: r.eof };
      if (r.from !== undefined) out.from = r.from;
      if (r.truncated !== undefined) out.truncated = r.truncated;
      return reply.send(out);
    },
  );
};
export default socketData;


import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { errorResponses, IdParams, ref } from '../schemas/common.js';
import { BulkDeleteQuery, BulkDeleteResult, CreateSocketBody, DeleteQuery, GetQuery, LIST_PAGE_MAX, ListQuery } from '../schemas/operations.js';
import { Socket, SocketList } from '../schemas/socket.js';
import { ownerFilter } from '../src/sockets/registry.js';

/** The socket resource: create, list, read, close (DESIGN.md section 3). */
const sockets: FastifyPluginAsyncTypebox = async (app) => {
  const tags = ['sockets'];

  app.post(
    '/v1/sockets',
    {
      schema: {
        tags,
        operationId: 'createSocket',
        summary: 'socket(2): create a socket',
        body: ref(CreateSocketBody),
        response: { 201: ref(Socket), ...errorResponses },
      },
    },
    async (request, reply) => {
      const socket = app.registry.create(request.body, request.user);
      return reply.status(201).send(socket.toResource());
    },
  );

  app.get(
    '/v1/sockets',
    {
      schema: {
        tags,
        operationId: 'listSockets',
        summary: 'List sockets, oldest first, optionally by state and label, a page at a time',
        querystring: ListQuery,
        response: { 200: ref(SocketList), ...errorResponses },
      },
    },
    async (request) => {
      const { limit, after, ...filter } = request.query;
      const page = app.registry.page({ ...filter, owner: ownerFilter(request.user) }, Number(after ?? 0), limit ?? LIST_PAGE_MAX);
      return { items: page.sockets.map((s) => s.toResource()), next: page.next };
    },
  );

  app.get(
    '/v1/sockets/:id',
    {
      schema: {
        tags,
        operationId: 'getSocket',
        summary: "One socket, read from the kernel now (?view=sockaddr adds the raw sockaddr bytes)",
        params: IdParams,
        querystring: GetQuery,
        response: { 200: ref(Socket), ...errorResponses },
      },
    },
    async (request) => app.registry.get(request.params.id, request.user).toResource(request.query.view),
  );

  app.delete(
    '/v1/sockets/:id',
    {
      schema: {
        tags,
        operationId: 'closeSocket',
        summary: 'close(2); ?reset=true sets SO_LINGER 0 first so the peer sees RST',
        params: IdParams,
        querystring: DeleteQuery,
        response: { 200: ref(Socket), ...errorResponses },
      },
    },
    async (request) => {
      const socket = app.registry.get(request.params.id, request.user);
      socket.close('closed by request', request.query.reset ?? false);
      return socket.toResource();
    },
  );

  app.delete(
    '/v1/sockets',
    {
      schema: {
        tags,
        operationId: 'closeSocketsByLabel',
        summary: 'Close every open socket with a label',
        querystring: BulkDeleteQuery,
        response: { 200: ref(BulkDeleteResult), ...errorResponses },
      },
    },
    async (request) => ({ closed: app.registry.closeByLabel(request.query.label, request.user, { reset: request.query.reset }) }),
  );
};
export default sockets;

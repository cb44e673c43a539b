import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { errorResponses, ref } from '../schemas/common.js';
import { SocketPairBody } from '../schemas/operations.js';
import { SocketPair } from '../schemas/socket.js';

const socketpairs: FastifyPluginAsyncTypebox = async (app) => {
  app.post(
    '/v1/socketpairs',
    {
      schema: {
        tags: ['sockets'],
        operationId: 'socketpair',
        summary: 'socketpair(2): two connected AF_UNIX sockets',
        body: ref(SocketPairBody),
        response: { 201: ref(SocketPair), ...errorResponses },
      },
    },
    async (request, reply) => {
      const pair = app.registry.socketpair(request.body, request.user);
      return reply.status(201).send({ sockets: pair.map((s) => s.toResource()) });
    },
  );
};
export default socketpairs;

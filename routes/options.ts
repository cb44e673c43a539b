import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { errorResponses, IdParams, ref } from '../schemas/common.js';
import { SocketOptions } from '../schemas/options.js';

/** getsockopt/setsockopt by C name; values are what the kernel reads back. */
const options: FastifyPluginAsyncTypebox = async (app) => {
  const tags = ['options'];

  app.get(
    '/v1/sockets/:id/options',
    {
      schema: {
        tags,
        operationId: 'getOptions',
        summary: 'getsockopt(2) of every option that applies (reading SO_ERROR clears it)',
        params: IdParams,
        response: { 200: ref(SocketOptions), ...errorResponses },
      },
    },
    async (request) => app.registry.get(request.params.id, request.user).getOptions(),
  );

  app.patch(
    '/v1/sockets/:id/options',
    {
      schema: {
        tags,
        operationId: 'setOptions',
        summary: 'setsockopt(2) for each option given, in order; answers every option as read back',
        params: IdParams,
        body: ref(SocketOptions),
        response: { 200: ref(SocketOptions), ...errorResponses },
      },
    },
    async (request) => app.registry.get(request.params.id, request.user).setOptions(request.body),
  );
};
export default options;

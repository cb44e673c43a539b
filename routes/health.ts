import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { errorResponses, ref } from '../schemas/common.js';
import { Health } from '../schemas/operations.js';
import { VERSION } from '../src/version.js';

const started = Date.now();

const health: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/v1/health',
    {
      schema: {
        tags: ['service'],
        operationId: 'health',
        summary: 'Liveness; needs no token',
        security: [],
        response: { 200: ref(Health), ...errorResponses },
      },
    },
    async () => ({
      status: 'ok' as const,
      uptimeMs: Date.now() - started,
      sockets: app.registry.size.open,
      version: VERSION,
    }),
  );
};
export default health;

import helmet from '@fastify/helmet';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';

/** OpenAPI from the route schemas (openapi/openapi.json is generated from it), Swagger UI at /docs. */
export async function installSwagger(app: FastifyInstance, version: string): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'sockctl',
        description:
          'Real operating-system sockets over HTTP: every BSD socket call as a REST action, errno at the step that fails. ' +
          'WebSocket and SSE streams are documented in the README.',
        version,
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
      tags: [
        { name: 'sockets', description: 'the socket resource' },
        { name: 'calls', description: 'bind, listen, accept, connect, shutdown' },
        { name: 'data', description: 'send and recv' },
        { name: 'options', description: 'getsockopt and setsockopt' },
        { name: 'service', description: 'health' },
      ],
    },
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => String(json.$id ?? `def-${i}`) },
  });
  // the one page a browser renders: helmet's whole set of headers, in this scope only (the API's own are in
  // plugins/hardening.ts); CSP off, since Swagger UI's page runs its own scripts
  await app.register(async (docs) => {
    await docs.register(helmet, { contentSecurityPolicy: false, crossOriginResourcePolicy: { policy: 'same-site' } });
    await docs.register(swaggerUi, { routePrefix: '/docs' });
  });
}

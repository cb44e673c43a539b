/**
 * Baseline for the control plane: a bare fastify server with one POST route validating its JSON body
 * exactly as sockctl's send does (the same SendBody schema, the same strict Ajv set-up, the same response
 * schema), and doing nothing else: no auth, no socket, no event.
 *
 * Env: BARE_PORT. Answers GET /health when ready.
 */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify from 'fastify';
import { IdParams, ref } from '../../schemas/common.js';
import { sharedSchemas } from '../../schemas/index.js';
import { SendBody, SendResult } from '../../schemas/operations.js';
import { installValidators } from '../../src/plugins/validation.js';

const app = Fastify({ logger: false, keepAliveTimeout: 72_000 }).withTypeProvider<TypeBoxTypeProvider>();
for (const schema of sharedSchemas) app.addSchema(schema);
installValidators(app, sharedSchemas);
app.get('/health', async () => ({ ok: true }));
app.post(
  '/v1/sockets/:id/send',
  { schema: { params: IdParams, body: ref(SendBody), response: { 200: ref(SendResult) } } },
  async (request) => ({ bytes: Buffer.byteLength(request.body.data) }),
);
await app.listen({ host: '127.0.0.1', port: Number(process.env.BARE_PORT ?? 0) });
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));

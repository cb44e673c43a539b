import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import health from '../routes/health.js';
import options from '../routes/options.js';
import socketCalls from '../routes/socket-calls.js';
import socketData from '../routes/socket-data.js';
import socketpairs from '../routes/socketpairs.js';
import sockets from '../routes/sockets.js';
import stream from '../routes/stream.js';
import eventsRoutes from '../routes/events.js';
import { sharedSchemas } from '../schemas/index.js';
import type { Config } from './config.js';
import { VERSION } from './version.js';
import { EventLog } from './events/event-log.js';
import { installAuth } from './plugins/auth.js';
import { installErrorHandler } from './plugins/error-handler.js';
import { installSwagger } from './plugins/swagger.js';
import { installValidators } from './plugins/validation.js';
import { installWebsocket } from './plugins/websocket.js';
import { Registry } from './sockets/registry.js';
import { KernelMonitor } from './sockets/kernel-monitor.js';
import { Access } from './policy/access.js';
import { AddressPolicy, defaultRules } from './policy/address-policy.js';
import { Users } from './policy/users.js';
import { installHardening } from './plugins/hardening.js';

declare module 'fastify' {
  interface FastifyInstance {
    registry: Registry;
    events: EventLog;
    config: Config;
    users: Users;
    policy: AddressPolicy;
    kernelMonitor: KernelMonitor;
  }
}

/** Log requests without their query's token. */
const serializers = {
  req(req: { method: string; url: string; ip?: string }) {
    return { method: req.method, url: req.url.replace(/([?&]token=)[^&]*/g, '$1[redacted]'), remoteAddress: req.ip };
  },
};

/** Levels at which fastify logs every request (`incoming request`, `request completed`). */
const REQUEST_LEVELS = new Set(['info', 'debug', 'trace']);

/**
 * A request's logger: a pino child carrying its reqId when every request is logged; otherwise (warn and
 * above) the root logger, since only failures are logged then and they name their reqId themselves
 * (error-handler.ts). pino serializes a child's bindings as it makes it: about 3 µs of a 55 µs send or
 * recv (bench scenario 4, same-run A/B of the service's CPU per call).
 */
function childLoggerFactory(logger: FastifyBaseLogger, bindings: Record<string, unknown>, opts: object): FastifyBaseLogger {
  return REQUEST_LEVELS.has(logger.level) ? logger.child(bindings, opts) : logger;
}

/**
 * The whole service as a fastify instance, not listening. `config.token` and `config.unixDir` must be
 * set (main.ts fills them). Closing the app closes every socket it holds.
 */
export async function buildApp(
  config: Config,
  opts: { logger?: FastifyServerOptions['logger'] } = {},
): Promise<FastifyInstance> {
  if (!config.token && !config.tokensFile) throw new Error('buildApp needs a token or a tokens file');
  if (!config.unixDir) throw new Error('buildApp needs a unixDir');
  const app = Fastify({
    logger: opts.logger ?? { level: config.logLevel, serializers },
    bodyLimit: config.bodyLimit,
    requestTimeout: config.maxWaitMs + 30_000,
    connectionTimeout: 0,
    keepAliveTimeout: 72_000,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
  }).withTypeProvider<TypeBoxTypeProvider>();
  app.setChildLoggerFactory(childLoggerFactory);

  const users = new Users(config.token, config.tokensFile, {
    sockets: config.userSockets,
    listeners: config.userListeners,
    connectsPerSecond: config.userConnectsPerSecond,
    bufferBytes: config.userBufferBytes,
    observers: config.userObservers,
  });
  const policy = new AddressPolicy(
    defaultRules({
      allowRaw: config.allowRaw,
      allowAbstract: config.unixAllowAbstract,
      unixPrefixes: [config.unixAllowOutside ? '/' : config.unixDir],
    }),
    config.policyFile,
  );
  const events = new EventLog(config.eventLogSize);
  const registry = new Registry(config, events, new Access(policy, config.unixDir));
  app.decorate('users', users);
  app.decorate('policy', policy);
  app.decorate('registry', registry);
  app.decorate('events', events);
  app.decorate('config', config);
  const monitor = new KernelMonitor(events, () => registry.all(), {
    intervalMs: config.kernelSampleMs,
    maxSockets: 2000,
    afterCloseMs: 120_000,
  });
  app.decorate('kernelMonitor', monitor);
  app.addHook('onClose', async () => {
    monitor.stop();
    registry.closeAll('service shutting down');
  });

  for (const schema of sharedSchemas) app.addSchema(schema);
  installValidators(app, sharedSchemas);
  installErrorHandler(app);
  app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  // A POST without a body is an empty object: `curl -X POST .../listen` is a listen with the defaults.
  app.addHook('preValidation', (request, _reply, done) => {
    if (request.body === undefined && request.method === 'POST') request.body = {};
    done();
  });
  // @fastify/websocket's onRequest hook marks upgrade requests so that its onResponse hook destroys the
  // socket after a refusal; it must run before auth, or a 401 to an upgrade leaves the socket open for good
  await installWebsocket(app, config);
  // Close every socket before the server waits for its in-flight requests (after the WebSocket clients,
  // whose preClose hook comes first): a pending accept/recv/connect then ends with EBADF instead of holding
  // the shutdown for up to SOCKCTL_MAX_WAIT_MS. The onClose hook above catches any socket made meanwhile.
  app.addHook('preClose', async () => registry.closeAll('service shutting down'));
  installAuth(app, users);
  await installHardening(app, config);
  await installSwagger(app, VERSION);

  await app.register(health);
  await app.register(sockets);
  await app.register(socketCalls);
  await app.register(socketData);
  await app.register(options);
  await app.register(socketpairs);
  await app.register(stream);
  await app.register(eventsRoutes);
  return app;
}

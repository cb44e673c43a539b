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
import { errors } from './errors.js';
import { VERSION } from './version.js';
import { EventLog } from './events/event-log.js';
import { installAuth } from './plugins/auth.js';
import { installErrorHandler, isUpgrade } from './plugins/error-handler.js';
import { installSwagger } from './plugins/swagger.js';
import { installValidators } from './plugins/validation.js';
import { closeWebSocketClients, installWebsocket } from './plugins/websocket.js';
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
  // An upgrade (it passed auth by now) to a route that is not a WebSocket route is refused, and its socket
  // closed by the error handler: @fastify/websocket, in the WebSocket routes' context, does not see it.
  const wsRoutes = new Set<string>();
  app.addHook('onRoute', (route) => {
    if (route.websocket || route.wsHandler) wsRoutes.add(route.url);
  });
  app.addHook('preValidation', (request, _reply, done) => {
    if (isUpgrade(request) && !request.is404 && !wsRoutes.has(request.routeOptions.url ?? ''))
      return done(errors.badRequest(`${request.routeOptions.url ?? request.url} is not a WebSocket route`));
    if (request.body === undefined && request.method === 'POST') request.body = {};
    done();
  });
  // Close every socket before the server waits for its in-flight requests, after the WebSocket clients
  // (1001): a pending accept/recv/connect then ends with EBADF instead of holding the shutdown for up to
  // SOCKCTL_MAX_WAIT_MS. The onClose hook above catches any socket made meanwhile.
  let wss: FastifyInstance['websocketServer'] | undefined; // set where the WebSocket routes are registered
  app.addHook('preClose', (done) => {
    closeWebSocketClients(wss);
    done();
  });
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
  // @fastify/websocket and the WebSocket routes in a context of their own: the plugin's two hooks (one
  // marks upgrade requests, the other destroys a refused upgrade's socket after the answer) then run on
  // those routes only, not on every REST call (CPU per recv call 0.932x, 0.987x and 0.960x in same-run
  // A/B runs without them). Root hooks run first, so what they refuse, and upgrades to other routes, the
  // error handlers close (plugins/error-handler.ts, the preValidation hook above).
  await app.register(async (ws) => {
    await installWebsocket(ws, config);
    wss = ws.websocketServer;
    await ws.register(stream);
    await ws.register(eventsRoutes);
  });
  app.decorate('websocketServer', wss!);
  return app;
}

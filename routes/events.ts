import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { WebSocket } from 'ws';
import { EventsQuery } from '../schemas/streams.js';
import { errors } from '../src/errors.js';
import { Observer, type ObserverOptions } from '../src/events/observer.js';
import type { Registry } from '../src/sockets/registry.js';
import type { User } from '../src/policy/users.js';

/** Bytes a slow observer's transport may hold before its events queue (and, past the queue, drop). */
const HIGH_WATER = 1024 * 1024;

function observerOptions(
  q: EventsQuery,
  registry: Registry,
  user: User,
  capacity: number,
  after: number | undefined,
): ObserverOptions {
  const filter = registry.eventFilter(user, { socket: q.socket, label: q.label });
  return { filter, capacity, withData: q.data ?? false, encoding: q.encoding ?? 'utf8', after };
}

/**
 * GET /v1/events: observers for dashboards (DESIGN.md section 5), over WebSocket or, with
 * `Accept: text/event-stream`, server-sent events. Observers never slow a socket.
 */
const events: FastifyPluginAsyncTypebox = async (app) => {
  const perUser = new Map<string, number>();
  let count = 0;
  const sseClients = new Set<import('node:http').ServerResponse>();
  app.addHook('preClose', async () => {
    for (const res of sseClients) res.end();
  });
  /** Bounds observers, per user and for the service; returns the release. */
  const admit = (user: User) => {
    if (count >= app.config.maxObservers) throw errors.quota(`too many observers (SOCKCTL_MAX_OBSERVERS=${app.config.maxObservers})`);
    const mine = perUser.get(user.name) ?? 0;
    if (mine >= user.limits.observers) throw errors.quota(`user '${user.name}' has ${mine} event streams open, the limit`);
    count++;
    perUser.set(user.name, mine + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      count--;
      perUser.set(user.name, (perUser.get(user.name) ?? 1) - 1);
    };
  };

  app.route({
    method: 'GET',
    url: '/v1/events',
    schema: { hide: true, querystring: EventsQuery },
    // server-sent events: a plain GET
    handler: async (request, reply) => {
      if (!request.headers.accept?.includes('text/event-stream'))
        throw errors.badRequest('GET /v1/events is a WebSocket, or server-sent events with Accept: text/event-stream');
      const release = admit(request.user);
      const lastId = request.headers['last-event-id'];
      const after = request.query.after ?? (typeof lastId === 'string' && /^\d+$/.test(lastId) ? Number(lastId) : undefined);
      const res = reply.raw;
      reply.hijack();
      res.writeHead(200, {
        'content-type': 'text/event-stream',
        'cache-control': 'no-cache',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
      });
      let congested = false;
      const observer = new Observer(
        app.events,
        {
          write: (json, seq, type) => {
            if (!res.write(`id: ${seq}\nevent: ${type}\ndata: ${json}\n\n`)) congested = true;
          },
          congested: () => congested,
          cork: () => res.cork(),
          uncork: () => res.uncork(),
        },
        observerOptions(request.query, app.registry, request.user, app.config.observerQueue, after),
      );
      res.on('drain', () => {
        congested = false;
        observer.drain();
      });
      const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), 15_000).unref();
      sseClients.add(res);
      const end = () => {
        sseClients.delete(res);
        clearInterval(heartbeat);
        observer.stop();
        release();
      };
      res.on('close', end);
      res.write(': sockctl events\n\n');
      observer.start();
    },
    wsHandler: (ws: WebSocket, request) => {
      let release: () => void;
      try {
        release = admit(request.user);
      } catch (e) {
        ws.close(4429, 'too many observers');
        return;
      }
      const raw = (ws as unknown as { _socket?: import('node:net').Socket })._socket;
      const observer = new Observer(
        app.events,
        {
          write: (json) => ws.send(json),
          // a text frame from the shared bytes: ws sends them as they are (no mask, no copy)
          writeShared: (utf8) => ws.send(utf8, { binary: false }),
          congested: () => ws.bufferedAmount > HIGH_WATER,
          cork: () => raw?.cork(),
          uncork: () => raw?.uncork(),
        },
        observerOptions(request.query, app.registry, request.user, app.config.observerQueue, request.query.after),
      );
      // the TCP socket under the WebSocket: its 'drain' says the observer may write again
      raw?.on('drain', () => observer.drain());
      ws.on('close', () => {
        observer.stop();
        release();
      });
      ws.on('message', () => undefined); // observers only listen
      observer.start();
    },
  });
};
export default events;

import websocket from '@fastify/websocket';
import type { FastifyInstance } from 'fastify';
import type { WebSocket } from 'ws';
import type { Config } from '../config.js';

/**
 * @fastify/websocket with the service's limits: a maximum message size, ping/pong liveness (a client
 * that misses a pong by the next ping is dropped), and clients closed with 1001 before the server closes.
 */
export async function installWebsocket(app: FastifyInstance, config: Config): Promise<void> {
  await app.register(websocket, {
    options: { maxPayload: config.wsMaxPayload, perMessageDeflate: false },
    preClose(done) {
      for (const client of app.websocketServer.clients) client.close(1001, 'service shutting down');
      done();
    },
  });
  const alive = new WeakSet<WebSocket>();
  app.websocketServer.on('connection', (ws: WebSocket) => {
    alive.add(ws);
    ws.on('pong', () => alive.add(ws));
    ws.on('error', () => ws.terminate());
  });
  const pinger = setInterval(() => {
    for (const ws of app.websocketServer.clients) {
      if (!alive.has(ws)) {
        ws.terminate();
        continue;
      }
      alive.delete(ws);
      ws.ping();
    }
  }, config.wsPingMs).unref();
  app.addHook('onClose', async () => clearInterval(pinger));
}

import websocket from '@fastify/websocket';
import type { FastifyInstance } from 'fastify';
import type { WebSocket } from 'ws';
import type { Config } from '../config.js';

/**
 * Closes every WebSocket client with 1001. The plugin's preClose does it too, but the plugin lives in a
 * child context (app.ts), whose hooks run after the root's: the root calls this first, before it closes
 * the sockets, so that consumers end with 1001 and not with their socket's close.
 */
export function closeWebSocketClients(wss: FastifyInstance['websocketServer'] | undefined): void {
  for (const client of wss?.clients ?? []) client.close(1001, 'service shutting down');
}

/**
 * @fastify/websocket with the service's limits: a maximum message size, ping/pong liveness (a client
 * that misses a pong by the next ping is dropped), and clients closed with 1001 before the server closes.
 */
export async function installWebsocket(app: FastifyInstance, config: Config): Promise<void> {
  await app.register(websocket, {
    options: { maxPayload: config.wsMaxPayload, perMessageDeflate: false },
    preClose(done) {
      closeWebSocketClients(app.websocketServer);
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

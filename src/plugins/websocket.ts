import websocket from '@fastify/websocket';
import type { FastifyInstance } from 'fastify';
import type { Duplex } from 'node:stream';
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

/** The ws's TCP socket (ws keeps it as `_socket`; not in its types), for cork/uncork. */
export function underlying(ws: WebSocket): Duplex | undefined {
  const sock = (ws as unknown as { _socket?: Duplex | null })._socket;
  return sock && !sock.destroyed ? sock : undefined;
}

/**
 * Bytes for the WebSocket's connection past ws, in one corked write: frames already made (src/io/ws-frames.ts),
 * which go out ahead of anything sent after. `done` runs after the last one's write. Like ws.send, nothing is
 * written once the WebSocket is not open: false then, and `done` is not called.
 */
export function writeRaw(ws: WebSocket, chunks: Buffer[], done: () => void): boolean {
  const sock = underlying(ws);
  if (!sock || ws.readyState !== ws.OPEN || chunks.length === 0) return false;
  sock.cork();
  chunks.forEach((c, i) => sock.write(c, i === chunks.length - 1 ? done : undefined));
  sock.uncork();
  return true;
}

type NetSocket = Duplex & { _handle?: { fd?: number } | null; encrypted?: boolean };

/**
 * The consumer's direct mode (ConsumerSink.direct): the ws connection's fd, and a gate at 1 only while
 * the WebSocket is open and none of ws's own writes (frames, pings, pongs, close) is pending on the
 * connection, so that the native reader's frames never land inside one of them. Every write of ws goes
 * through its socket's write(); the gate shuts there and opens again from the last pending write's
 * callback (the bytes are in the kernel then), and writes made before the gate was are waited for too. It
 * shuts for good in _destroy, before libuv closes the fd (whose number may be reused at once). Undefined for
 * a TLS socket, one without an fd, or a WebSocket with an extension.
 */
export function directGate(ws: WebSocket): { fd: number; gate: Int32Array } | undefined {
  const sock = underlying(ws) as NetSocket | undefined;
  const fd = sock?._handle?.fd;
  // with an extension (permessage-deflate, off in this service) ws could hold frames back in its sender
  if (!sock || sock.encrypted || ws.extensions !== '' || typeof fd !== 'number' || fd < 0) return undefined;
  // over an ArrayBuffer of its own: off V8's heap from the start, so the address the addon keeps never moves
  const gate = new Int32Array(new ArrayBuffer(4));
  let pending = 0;
  let shut = false;
  const update = () => void (gate[0] = !shut && pending === 0 && ws.readyState === ws.OPEN ? 1 : 0);
  const write = sock.write as (this: NetSocket, ...args: unknown[]) => boolean;
  // (the callback is an inline function: a named one would be made, and named, on every write)
  sock.write = function (this: NetSocket, chunk: unknown, encoding?: unknown, cb?: unknown) {
    const callback = (typeof encoding === 'function' ? encoding : cb) as ((err?: Error | null) => void) | undefined;
    pending++;
    gate[0] = 0;
    return write.call(this, chunk, typeof encoding === 'string' ? encoding : null, (err?: Error | null) => {
      pending--;
      update();
      callback?.(err);
    });
  } as typeof sock.write;
  const destroy = sock._destroy;
  sock._destroy = function (this: NetSocket, err, cb) {
    shut = true;
    gate[0] = 0;
    return destroy.call(this, err, cb);
  };
  // writes made before this one (a resume's replay, say) may still be pending: an empty write, queued behind
  // them, keeps the gate shut until they are out
  if (sock.writableLength > 0) sock.write(Buffer.alloc(0));
  else update();
  return { fd, gate };
}

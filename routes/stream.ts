import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import { IdParams } from '../schemas/common.js';
import { ClientOp, StreamQuery } from '../schemas/streams.js';
import { decode } from '../src/codec.js';
import { SockctlError } from '../src/errors.js';
import { Consumer } from '../src/sockets/consumer.js';
import { Value } from 'typebox/value';

/** The ws's TCP socket (ws keeps it as `_socket`; not in its types), for cork/uncork. */
function underlying(ws: WebSocket): Duplex | undefined {
  const sock = (ws as unknown as { _socket?: Duplex | null })._socket;
  return sock && !sock.destroyed ? sock : undefined;
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

/** WebSocket close codes of the consumer stream (documented in the README). */
export const CLOSE = { normal: 1000, refused: 4409, notFound: 4404, badRequest: 4400 } as const;

/** GET /v1/sockets/:id/stream: the socket's consumer (DESIGN.md section 5), a thin adapter over Consumer. */
const stream: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/v1/sockets/:id/stream',
    {
      websocket: true,
      schema: { hide: true, params: IdParams, querystring: StreamQuery },
    },
    (ws: WebSocket, request) => {
      const cfg = app.config;
      const q = request.query;
      let consumer: Consumer | undefined;
      // handlers first, before anything can fail or wait: early frames must not be lost
      const pending: (Buffer | string)[] = [];
      ws.on('message', (data: Buffer, isBinary: boolean) => {
        if (!consumer) return void pending.push(isBinary ? data : data.toString());
        onMessage(consumer, isBinary ? data : data.toString());
      });
      ws.on('close', () => consumer?.detach());
      const refuse = (e: unknown) => {
        const err = e instanceof SockctlError ? e : new SockctlError(500, 'SOCKCTL_INTERNAL', 'internal error');
        ws.send(JSON.stringify({ type: 'error', socket: request.params.id, ...err.toJSON() }));
        ws.close(err.statusCode === 404 ? CLOSE.notFound : err.statusCode === 400 ? CLOSE.badRequest : CLOSE.refused, err.code);
      };
      const onMessage = (c: Consumer, msg: Buffer | string) => {
        if (typeof msg !== 'string') return c.write(msg);
        let op: unknown;
        try {
          op = JSON.parse(msg);
        } catch {
          return ws.send(JSON.stringify({ type: 'error', code: 'SOCKCTL_BAD_REQUEST', message: 'a text frame must be a JSON op' }));
        }
        if (!Value.Check(ClientOp, op)) {
          return ws.send(JSON.stringify({ type: 'error', code: 'SOCKCTL_BAD_REQUEST', message: 'unknown op: expected {op: "send"|"shutdown"|"close"}' }));
        }
        try {
          if (op.op === 'send') c.write(decode(op.data, op.encoding));
          else if (op.op === 'shutdown') c.shutdown(op.how);
          else c.close();
        } catch (e) {
          if (e instanceof SockctlError) ws.send(JSON.stringify({ type: 'error', op: op.op, ...e.toJSON() }));
        }
      };
      try {
        const socket = app.registry.get(request.params.id, request.user);
        consumer = new Consumer(
          socket,
          app.events,
          {
            text: (json) => ws.send(json, afterWrite),
            // `done` releases a reader slot: only once the bytes are written out (the send's completion)
            binary: (data, done) => ws.send(data, { binary: true }, done ? () => (done(), afterWrite()) : afterWrite),
            direct: () => directGate(ws),
            raw: (chunks, done) => {
              // as ws.send, nothing once the WebSocket is closing (the rest of a frame the addon began is
              // written in the same turn as the addon's write, while it is open)
              const sock = underlying(ws);
              if (!sock || ws.readyState !== ws.OPEN) return done();
              sock.cork();
              chunks.forEach((c, i) => sock.write(c, i === chunks.length - 1 ? () => (done(), afterWrite()) : undefined));
              sock.uncork();
            },
            // one writev for the frames of a read event (ws corks each frame's header and payload inside)
            cork: () => underlying(ws)?.cork(),
            uncork: () => underlying(ws)?.uncork(),
            buffered: () => ws.bufferedAmount,
            pauseInput: () => ws.pause(),
            resumeInput: () => ws.resume(),
            end: (code, reason) => ws.close(code, reason),
          },
          {
            binary: q.binary ?? false,
            encoding: q.encoding ?? 'utf8',
            autoAccept: q.autoAccept ?? false,
            offset: q.offset,
            highWaterBytes: cfg.streamHighWaterBytes,
            writeQueueBytes: cfg.streamWriteQueueBytes,
            retainBytes: Math.min(cfg.streamRetainBytes, request.user.limits.bufferBytes),
            userRetainBytes: request.user.limits.bufferBytes,
            retainMs: cfg.streamRetainMs,
            closeFlushMs: cfg.maxWaitMs,
          },
        );
        consumer.attach();
      } catch (e) {
        consumer = undefined;
        return refuse(e);
      }
      const c = consumer;
      function afterWrite() {
        c.resume();
      }
      for (const msg of pending.splice(0)) onMessage(c, msg);
    },
  );
};
export default stream;

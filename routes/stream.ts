import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { WebSocket } from 'ws';
import { IdParams } from '../schemas/common.js';
import { ClientOp, StreamQuery } from '../schemas/streams.js';
import { decode } from '../src/codec.js';
import { SockctlError } from '../src/errors.js';
import { Consumer } from '../src/sockets/consumer.js';
import { directGate, underlying, writeRaw } from '../src/plugins/websocket.js';
import { Value } from 'typebox/value';

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
            // nothing once the WebSocket is closing (the rest of a frame the addon began is written in the same
            // turn as the addon's write, while it is open): the slots go back at once
            raw: (chunks, done) => void (writeRaw(ws, chunks, () => (done?.(), afterWrite())) || done?.()),
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

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { SockctlError } from '../errors.js';

/** How often the event loop's lag is sampled. */
const SAMPLE_MS = 500;

/**
 * Load shedding: while the event loop lags more than `maxDelayMs`, every request is answered 503
 * SOCKCTL_OVERLOADED with `retry-after: 1`, until a later sample finds the loop on time. The lag is how late
 * one timer fires, every SAMPLE_MS: after a stall, the overdue sample runs before the requests that queued up
 * meanwhile (libuv runs due timers before polling), so those are the ones shed.
 *
 * @fastify/under-pressure did this before with monitorEventLoopDelay, whose 10 ms timer woke an idle service
 * 100 times a second (0.6 ms of CPU a second, and about 6 µs per message at the bench's 1,000 messages/s);
 * this timer wakes it twice a second.
 */
export function installLoadShedding(app: FastifyInstance, maxDelayMs: number): void {
  let lagMs = 0;
  let due = performance.now() + SAMPLE_MS;
  const sampler = setInterval(() => {
    const now = performance.now();
    lagMs = Math.max(0, now - due);
    due = now + SAMPLE_MS;
  }, SAMPLE_MS).unref();
  app.addHook('onClose', async () => clearInterval(sampler));
  app.addHook('onRequest', (_request: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void) => {
    if (lagMs <= maxDelayMs) return done();
    reply.header('retry-after', '1');
    done(new SockctlError(503, 'SOCKCTL_OVERLOADED', `the service is overloaded (eventLoopDelay: ${Math.round(lagMs)} ms over ${maxDelayMs}); retry shortly`));
  });
}

import cors from '@fastify/cors';
import helmet from '@fastify/helmet';
import rateLimit from '@fastify/rate-limit';
import underPressure from '@fastify/under-pressure';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { isIP } from 'node:net';
import type { Config } from '../config.js';
import { errors, SockctlError } from '../errors.js';

const list = (s: string) => s.split(',').map((x) => x.trim()).filter(Boolean);

function hostname(host: string): string {
  if (host.startsWith('[')) return host.slice(1, host.indexOf(']'));
  const i = host.lastIndexOf(':');
  return i > 0 && host.indexOf(':') === i ? host.slice(0, i) : host;
}

/**
 * HTTP hardening: security headers, a CORS allowlist, the Origin of WebSocket/SSE handshakes, the Host
 * header against DNS rebinding, a per-user rate limit, and load shedding when the event loop lags.
 */
export async function installHardening(app: FastifyInstance, config: Config): Promise<void> {
  const origins = list(config.corsOrigins);
  const hosts = new Set(['localhost', ...list(config.allowedHosts).map((h) => h.toLowerCase())]);

  // JSON API: CSP off (Swagger UI's page needs its own scripts); the other helmet headers stay
  await app.register(helmet, { contentSecurityPolicy: false, crossOriginResourcePolicy: { policy: 'same-site' } });
  await app.register(cors, { origin: origins.length > 0 ? origins : false, allowedHeaders: ['authorization', 'content-type', 'last-event-id'] });

  app.addHook('onRequest', async (request: FastifyRequest) => {
    // a browser on evil.example resolving to 127.0.0.1 sends Host: evil.example
    const host = hostname((request.headers.host ?? '').toLowerCase());
    if (host && !isIP(host) && !hosts.has(host))
      throw errors.forbidden(`Host '${host}' is not allowed (SOCKCTL_ALLOWED_HOSTS)`);
    const streaming = request.headers.upgrade?.toLowerCase() === 'websocket' || (request.headers.accept ?? '').includes('text/event-stream');
    const origin = request.headers.origin;
    if (streaming && origin && !origins.includes(origin)) {
      let same = false;
      try {
        same = new URL(origin).host === request.headers.host;
      } catch {
        same = false;
      }
      if (!same) throw errors.forbidden(`Origin '${origin}' is not allowed (SOCKCTL_CORS_ORIGINS)`);
    }
  });

  await app.register(rateLimit, {
    hook: 'preHandler',
    max: config.rateLimitPerMinute,
    timeWindow: 60_000,
    keyGenerator: (request) => request.user?.name ?? request.ip,
    allowList: (request) => request.url.startsWith('/v1/health'),
    errorResponseBuilder: (_request, context) =>
      new SockctlError(429, 'SOCKCTL_RATE_LIMITED', `rate limit of ${context.max} requests per minute reached; retry in ${context.after}`),
  });

  if (config.maxEventLoopDelayMs === 0) return;
  await app.register(underPressure, {
    maxEventLoopDelay: config.maxEventLoopDelayMs,
    exposeStatusRoute: false,
    pressureHandler: (_request, reply, type, value) => {
      reply.header('retry-after', '1');
      throw new SockctlError(503, 'SOCKCTL_OVERLOADED', `the service is overloaded (${type}: ${value ?? ''}); retry shortly`);
    },
  });
}

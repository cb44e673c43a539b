import cors from '@fastify/cors';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { isIP } from 'node:net';
import type { Config } from '../config.js';
import { errors } from '../errors.js';
import { installLoadShedding } from './load-shedding.js';
import { installRateLimit } from './rate-limit.js';

/** The security headers of every answer. */
const API_HEADERS = {
  'x-content-type-options': 'nosniff', // a JSON body is never sniffed into HTML or script
  'cross-origin-resource-policy': 'same-site', // nor read cross-site by a <script> or <img> (Spectre)
  'x-frame-options': 'SAMEORIGIN',
  'referrer-policy': 'no-referrer',
} as const;

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

  // Every answer here is JSON (or a WebSocket/SSE upgrade), which a browser never renders as a page: the
  // headers that apply to such answers come from one constant object, errors and 404s included. Helmet's
  // document headers (COOP, Origin-Agent-Cluster, HSTS over plain HTTP, the IE- and Flash-era ones) protect
  // nothing on JSON and, as two hooks and a middleware per header on every call, took 40% of a bare fastify
  // route's rate; the one page, Swagger UI at /docs, gets helmet's whole set (plugins/swagger.ts).
  app.addHook('onRequest', (_request: FastifyRequest, reply: FastifyReply, done: () => void) => {
    reply.headers(API_HEADERS);
    done();
  });
  // no origin allowed (the default): no CORS handling at all, which answers exactly as the plugin with
  // origin: false did (no CORS headers; a preflight meets auth like any OPTIONS), without its per-request hook
  if (origins.length > 0) await app.register(cors, { origin: origins, allowedHeaders: ['authorization', 'content-type', 'last-event-id'] });

  // The last Host header that passed: a client sends the same one on every call, and the check is a function
  // of the header alone, so it runs when the header changes. Same-run A/B of recv (3 services a side,
  // pinned): CPU per call 0.958x and 0.967x (the check's toLowerCase, parsing and isIP's regex each call).
  let passedHost: string | undefined;
  app.addHook('onRequest', (request: FastifyRequest, _reply: FastifyReply, done: (err?: Error) => void) => {
    // a browser on evil.example resolving to 127.0.0.1 sends Host: evil.example
    const rawHost = request.headers.host ?? '';
    if (rawHost !== passedHost) {
      const host = hostname(rawHost.toLowerCase());
      if (host && !isIP(host) && !hosts.has(host))
        return done(errors.forbidden(`Host '${host}' is not allowed (SOCKCTL_ALLOWED_HOSTS)`));
      passedHost = rawHost;
    }
    const streaming = request.headers.upgrade?.toLowerCase() === 'websocket' || (request.headers.accept ?? '').includes('text/event-stream');
    const origin = request.headers.origin;
    if (streaming && origin && !origins.includes(origin)) {
      let same = false;
      try {
        same = new URL(origin).host === request.headers.host;
      } catch {
        same = false;
      }
      if (!same) return done(errors.forbidden(`Origin '${origin}' is not allowed (SOCKCTL_CORS_ORIGINS)`));
    }
    done();
  });

  installRateLimit(app, {
    max: config.rateLimitPerMinute,
    windowMs: 60_000,
    exempt: (request) => request.url.startsWith('/v1/health'),
  });

  if (config.maxEventLoopDelayMs > 0) installLoadShedding(app, config.maxEventLoopDelayMs);
}

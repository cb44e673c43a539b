// The committed OpenAPI document matches the routes' schemas, lists every REST route of DESIGN.md
// section 3 with an operationId, and Swagger UI is served at /docs without a token.
import { readFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openapiDocument } from '../src/openapi-gen.js';
import { startApp, type TestApp } from './helpers.js';

const COMMITTED = new URL('../openapi/openapi.json', import.meta.url);

/** The REST routes of the contract (DESIGN.md section 3), as OpenAPI paths, with their operationIds. */
const ROUTES: Record<string, string> = {
  'POST /v1/sockets': 'createSocket',
  'GET /v1/sockets': 'listSockets',
  'DELETE /v1/sockets': 'closeSocketsByLabel',
  'GET /v1/sockets/{id}': 'getSocket',
  'DELETE /v1/sockets/{id}': 'closeSocket',
  'POST /v1/sockets/{id}/bind': 'bind',
  'POST /v1/sockets/{id}/listen': 'listen',
  'POST /v1/sockets/{id}/accept': 'accept',
  'POST /v1/sockets/{id}/connect': 'connect',
  'POST /v1/sockets/{id}/send': 'send',
  'POST /v1/sockets/{id}/recv': 'recv',
  'POST /v1/sockets/{id}/shutdown': 'shutdown',
  'GET /v1/sockets/{id}/options': 'getOptions',
  'PATCH /v1/sockets/{id}/options': 'setOptions',
  'POST /v1/socketpairs': 'socketpair',
  'GET /v1/health': 'health',
};

type Operation = { operationId?: string; summary?: string; tags?: string[]; responses?: Record<string, unknown> };
type Doc = { openapi: string; paths: Record<string, Record<string, Operation>> };

function operations(doc: Doc): [string, Operation][] {
  return Object.entries(doc.paths).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, op]) => [`${method.toUpperCase()} ${path}`, op] as [string, Operation]),
  );
}

describe('openapi/openapi.json', () => {
  // Drift: the committed file is exactly what the generator writes from the current schemas.
  it('is up to date with the route schemas', async () => {
    const generated = await openapiDocument();
    const committed = readFileSync(COMMITTED, 'utf8');
    expect(committed === generated, 'openapi/openapi.json is out of date: run `npm run openapi` and commit the result').toBe(true);
  });

  // Every REST route of the contract is documented with its operationId, a summary, tags and the
  // shared error responses; nothing else is (WebSocket routes are hidden and documented by hand).
  it('lists every route with an operationId, a summary, tags and error responses', () => {
    const doc = JSON.parse(readFileSync(COMMITTED, 'utf8')) as Doc;
    expect(doc.openapi).toBe('3.1.0');
    const ops = operations(doc);
    expect(Object.fromEntries(ops.map(([key, op]) => [key, op.operationId]))).toEqual(ROUTES);
    const ids = ops.map(([, op]) => op.operationId);
    expect(new Set(ids).size).toBe(ids.length);
    for (const [key, op] of ops) {
      expect(op.summary, `${key} has a summary`).toMatch(/\S/);
      expect(op.tags?.length, `${key} has tags`).toBeGreaterThan(0);
      expect(Object.keys(op.responses ?? {}), `${key} declares the error responses`).toEqual(
        expect.arrayContaining(['4XX', '5XX']),
      );
    }
  });
});

describe('/docs', () => {
  let t: TestApp;
  beforeEach(async () => {
    t = await startApp();
  });
  afterEach(async () => {
    await t.close();
  });

  // Swagger UI needs no token: /docs answers the page (following a redirect if the plugin sends one).
  it('serves Swagger UI without a token', async () => {
    let r = await t.app.inject({ method: 'GET', url: '/docs' });
    if (r.statusCode >= 300 && r.statusCode < 400) {
      const location = String(r.headers.location);
      expect(location).toMatch(/^\/docs/);
      r = await t.app.inject({ method: 'GET', url: location });
    }
    expect(r.statusCode).toBe(200);
    expect(String(r.headers['content-type'])).toContain('text/html');
    expect(r.body).toContain('swagger-ui');
  });

  // The JSON the UI loads is the same document as the committed file.
  it('serves the document at /docs/json without a token', async () => {
    const r = await t.app.inject({ method: 'GET', url: '/docs/json' });
    expect(r.statusCode).toBe(200);
    const committed = JSON.parse(readFileSync(COMMITTED, 'utf8')) as Doc;
    expect(Object.keys((r.json() as Doc).paths)).toEqual(Object.keys(committed.paths));
  });
});

import { writeFileSync } from 'node:fs';
import { buildApp } from './app.js';
import { loadConfig } from './config.js';

/** The OpenAPI document as committed in openapi/openapi.json (stable: no machine-specific values). */
export async function openapiDocument(): Promise<string> {
  const app = await buildApp(loadConfig({}, { token: 'openapi', unixDir: '/nonexistent' }), { logger: false });
  try {
    await app.ready();
    return JSON.stringify(app.swagger(), null, 2) + '\n';
  } finally {
    await app.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  writeFileSync(new URL('../openapi/openapi.json', import.meta.url), await openapiDocument());
  process.stdout.write('wrote openapi/openapi.json\n');
}

// The README stays true: its first screen gives the two commands, and every configuration variable the
// schema reads is documented.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ConfigSchema } from '../src/config.js';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

describe('README', () => {
  it('gives the start and test commands on its first screen', () => {
    const first = readme.split('\n').slice(0, 20).join('\n');
    expect(first).toContain('npm install && npm start');
    expect(first).toContain('npm install && npm test');
  });

  it('documents every environment variable of the config schema', () => {
    const names = Object.values(ConfigSchema.properties).map((p) => (p as { env?: string }).env);
    const missing = names.filter((n) => n && !readme.includes(`\`${n}\``));
    expect(missing).toEqual([]);
  });
});

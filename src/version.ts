import { existsSync, readFileSync } from 'node:fs';

/** package.json: one level up from src/, two from the compiled dist/src of `npm run build`. */
const pkg = [new URL('../package.json', import.meta.url), new URL('../../package.json', import.meta.url)].find((u) => existsSync(u))!;

/** The service's version, from package.json. */
export const VERSION = (JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version;

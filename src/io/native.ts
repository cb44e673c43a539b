import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { ConstantName, Native } from '../../native/index.js';

/** The project root: two levels up from src/io, three from the compiled dist/src/io of `npm run build`. */
const root = [new URL('../../', import.meta.url), new URL('../../../', import.meta.url)].find((u) =>
  existsSync(new URL('package.json', u)),
)!;

/** The addon (native/sockctl.c), built into build/Release by `npm install`. */
export const native: Native = createRequire(import.meta.url)(fileURLToPath(new URL('build/Release/sockctl.node', root))) as Native;

/** The addon's numeric constants by their C names. */
export const C: Readonly<Record<ConstantName, number>> = native.constants;

export type { ConstantName, SockAddr, RecvResult, TcpInfo, Poller } from '../../native/index.js';

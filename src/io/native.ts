import { createRequire } from 'node:module';
import type { ConstantName, Native } from '../../native/index.js';

/** The addon (native/sockctl.c), built into build/Release by `npm install`. */
export const native: Native = createRequire(import.meta.url)('../../build/Release/sockctl.node') as Native;

/** The addon's numeric constants by their C names. */
export const C: Readonly<Record<ConstantName, number>> = native.constants;

export type { ConstantName, SockAddr, RecvResult, TcpInfo, Poller } from '../../native/index.js';

import { WebSocket } from 'ws';
import { within } from './procs.js';

/**
 * Forces a full garbage collection in a process started with `--inspect=127.0.0.1:PORT`, through the
 * inspector protocol (HeapProfiler.collectGarbage), so that an RSS reading holds what the process keeps,
 * not the garbage of the requests that built it. Used alike for sockctl and for the `net` baseline.
 */
export async function collectGarbage(inspectPort: number): Promise<void> {
  const list = (await (await fetch(`http://127.0.0.1:${inspectPort}/json/list`)).json()) as { webSocketDebuggerUrl: string }[];
  const url = list[0]?.webSocketDebuggerUrl;
  if (!url) throw new Error(`no inspector target on ${inspectPort}`);
  const ws = new WebSocket(url, { perMessageDeflate: false });
  try {
    await within(5000, 'inspector open', new Promise<void>((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    }));
    for (let i = 0; i < 2; i++) {
      // twice: the first pass can leave finalizer-held (external) memory for the second
      const id = i + 1;
      await within(30_000, 'HeapProfiler.collectGarbage', new Promise<void>((resolve) => {
        const onMessage = (m: Buffer) => {
          if ((JSON.parse(m.toString()) as { id?: number }).id === id) {
            ws.off('message', onMessage);
            resolve();
          }
        };
        ws.on('message', onMessage);
        ws.send(JSON.stringify({ id, method: 'HeapProfiler.collectGarbage' }));
      }));
    }
  } finally {
    ws.terminate();
  }
}

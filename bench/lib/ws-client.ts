import { WebSocket } from 'ws';
import { nowMs } from './clock.js';
import { within } from './procs.js';

/**
 * A bench WebSocket client. Its frames carry an all-zero mask, which ws then skips applying on both ends:
 * masking protects HTTP proxies, not loopback, and would spend the harness's CPU. So scenario 2 measures
 * no unmasking, for the baseline and for sockctl alike. (A browser's frames are masked: sockctl unmasks
 * them with bufferutil, 1.2 CPU-s/GB; ws's own JS loop took 4.2.)
 */
export async function openWs(url: string, timeoutMs = 10_000): Promise<WebSocket> {
  const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 64 * 1024 * 1024, generateMask: (m: Buffer) => void m.fill(0) });
  ws.on('error', () => undefined); // reported through the waits below
  await within(
    timeoutMs,
    `open ${url.replace(/token=[^&]*/, 'token=…')}`,
    new Promise<void>((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    }),
  );
  return ws;
}

/** Counts binary bytes until `bytes` arrived; text frames (sockctl's events) are ignored. */
export function receiveBytes(ws: WebSocket, bytes: number, timeoutMs: number): Promise<{ bytes: number; firstMs: number; lastMs: number }> {
  type Got = { bytes: number; firstMs: number; lastMs: number };
  let got = 0;
  let firstMs = 0;
  return within(
    timeoutMs,
    `receive ${bytes} bytes`,
    new Promise<Got>((resolve, reject) => {
      const onMessage = (data: Buffer, isBinary: boolean) => {
        if (!isBinary) return;
        if (got === 0) firstMs = nowMs();
        got += data.length;
        if (got >= bytes) {
          ws.off('message', onMessage);
          resolve({ bytes: got, firstMs, lastMs: nowMs() });
        }
      };
      ws.on('message', onMessage);
      ws.once('close', () => {
        if (got < bytes) reject(new Error(`closed after ${got} of ${bytes} bytes`));
      });
    }),
  ).finally(() => ws.removeAllListeners('message'));
}

/**
 * Sends `bytes` as binary frames of `frame` bytes, keeping at most `window` bytes buffered in the client
 * (a careful sender: it tops up from each send's completion callback).
 */
export function sendBytes(ws: WebSocket, bytes: number, frame: number, window: number, timeoutMs: number): Promise<void> {
  const block = Buffer.alloc(frame, 0x62);
  let queued = 0;
  let done = 0;
  return within(
    timeoutMs,
    `send ${bytes} bytes`,
    new Promise<void>((resolve, reject) => {
      const pump = () => {
        while (queued < bytes && ws.bufferedAmount < window) {
          const n = Math.min(frame, bytes - queued);
          queued += n;
          ws.send(n === frame ? block : block.subarray(0, n), { binary: true }, (err) => {
            if (err) return reject(err);
            done += n;
            if (done >= bytes) resolve();
            else pump();
          });
        }
      };
      ws.once('close', () => {
        if (done < bytes) reject(new Error(`closed after sending ${done} of ${bytes} bytes`));
      });
      pump();
    }),
  );
}

export async function closeWs(ws: WebSocket): Promise<void> {
  if (ws.readyState === WebSocket.CLOSED) return;
  const closed = new Promise<void>((r) => ws.once('close', () => r()));
  ws.close();
  await within(3000, 'ws close', closed).catch(() => ws.terminate());
}

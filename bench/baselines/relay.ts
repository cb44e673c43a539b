/**
 * Baseline: the minimal WebSocket ⇄ TCP relay a careful Node user would write with `net` and `ws`.
 * Each WebSocket connection to `/?port=N` gets a TCP connection to 127.0.0.1:N; bytes go both ways with
 * ws.send / socket.write. Backpressure both ways: the TCP socket pauses while the WebSocket holds more
 * than HIGH_WATER unsent bytes (as sockctl's consumer does, with the same default), and the WebSocket
 * pauses while the TCP socket's write buffer is full.
 *
 * Env: RELAY_PORT. Prints "relay listening on PORT" when ready.
 */
import { connect } from 'node:net';
import { WebSocketServer } from 'ws';

const HIGH_WATER = 4 * 1024 * 1024; // sockctl's SOCKCTL_STREAM_HIGH_WATER_BYTES default

const wss = new WebSocketServer({ host: '127.0.0.1', port: Number(process.env.RELAY_PORT ?? 0), perMessageDeflate: false, maxPayload: 16 * 1024 * 1024 });

wss.on('connection', (ws, req) => {
  const port = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('port'));
  const tcp = connect({ host: '127.0.0.1', port, noDelay: true });
  let paused = false;
  const sent = () => {
    if (paused && ws.bufferedAmount < HIGH_WATER / 2) {
      paused = false;
      tcp.resume();
    }
  };
  tcp.on('data', (d) => {
    ws.send(d, { binary: true }, sent);
    if (ws.bufferedAmount >= HIGH_WATER && !paused) {
      paused = true;
      tcp.pause();
    }
  });
  ws.on('message', (d: Buffer) => {
    if (!tcp.write(d)) {
      ws.pause();
      tcp.once('drain', () => ws.resume());
    }
  });
  tcp.on('end', () => ws.close(1000));
  tcp.on('error', () => ws.terminate());
  ws.on('close', () => tcp.destroy());
  ws.on('error', () => tcp.destroy());
});
wss.on('listening', () => {
  process.stdout.write(`relay listening on ${(wss.address() as { port: number }).port}\n`);
});
process.on('SIGTERM', () => process.exit(0));

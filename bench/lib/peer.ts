/**
 * The TCP (and UDP) peer of the data-path scenarios, in its own process so that its work does not share
 * the harness's event loop. Driven over IPC (bench/lib/ipc-child.ts): one request `{id, op, ...}`, one
 * reply `{id, ...}` (or `{id, error}`). Every connection counts what it receives, with the time of the
 * first and last byte on the shared monotonic clock.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { nowMs } from './clock.js';
import { serveHarness } from './child-server.js';
import { C, native } from '../../src/io/native.js';

/** What a connection (TCP) or a bound UDP socket received. */
interface Counter {
  bytes: number;
  firstMs: number;
  lastMs: number;
  /** Called on every chunk received. */
  onData?: () => void;
  end(reset: boolean): void;
}

interface Conn extends Counter {
  socket: Socket;
}

type Request = { id: number; op: string; [k: string]: unknown };

const conns = new Map<number, Conn>();
const udps = new Map<number, Counter & { socket: UdpSocket }>();
let nextConn = 1;
let server: Server | undefined;
const accepted: Socket[] = [];
const acceptWaiters: ((s: Socket) => void)[] = [];

function adopt(socket: Socket): number {
  socket.setNoDelay(true);
  const c: Conn = { socket, bytes: 0, firstMs: 0, lastMs: 0, end: (reset) => (reset ? socket.resetAndDestroy() : socket.destroy()) };
  socket.on('data', (d: Buffer) => received(c, d.length));
  socket.on('error', () => undefined); // resets at close are expected
  const id = nextConn++;
  conns.set(id, c);
  socket.once('close', () => conns.delete(id));
  return id;
}

function received(c: Counter, n: number): void {
  const t = nowMs();
  if (c.bytes === 0) c.firstMs = t;
  c.bytes += n;
  c.lastMs = t;
  c.onData?.();
}

function conn(id: unknown): Conn {
  const c = conns.get(Number(id));
  if (!c) throw new Error(`no connection ${String(id)}`);
  return c;
}

/** A TCP connection or a UDP socket, by id (they share the id space). */
function find(id: unknown): Counter | undefined {
  return conns.get(Number(id)) ?? udps.get(Number(id));
}

/**
 * Writes `bytes` from one reused block, honouring backpressure; resolves once the last write is handed to
 * the kernel. No FIN follows: the receiver knows the count, and websockify (0.10) closes the WebSocket as
 * soon as its target sends FIN, dropping what it still had queued for the client (2 MiB of 256 in a run).
 */
function blast(c: Conn, bytes: number, chunk: number): Promise<{ startMs: number; endMs: number }> {
  const block = Buffer.alloc(chunk, 0x61);
  const startMs = nowMs();
  let left = bytes;
  return new Promise((resolve, reject) => {
    c.socket.once('error', reject);
    const done = () => resolve({ startMs, endMs: nowMs() });
    const pump = () => {
      while (left > 0) {
        const n = Math.min(left, chunk);
        left -= n;
        const ok = c.socket.write(n === chunk ? block : block.subarray(0, n), left === 0 ? done : undefined);
        if (!ok && left > 0) return void c.socket.once('drain', pump);
      }
    };
    if (left === 0) done();
    else pump();
  });
}

/** `count` messages of `size` bytes at `rate` per second; each holds its send time (f64 ms) and its index. */
function ticks(c: Conn, rate: number, count: number, size: number): Promise<{ sent: number }> {
  const start = nowMs();
  let sent = 0;
  return new Promise((resolve) => {
    const tick = () => {
      const due = Math.min(count, Math.floor(((nowMs() - start) * rate) / 1000) + 1);
      while (sent < due) {
        const m = Buffer.alloc(size);
        m.writeUInt32LE(sent, 8);
        m.writeDoubleLE(nowMs(), 0);
        c.socket.write(m);
        sent++;
      }
      if (sent >= count || c.socket.destroyed) return resolve({ sent });
      // sleep until the next message is due (timers have ~1 ms resolution)
      const next = start + (sent * 1000) / rate;
      setTimeout(tick, Math.max(0, next - nowMs()));
    };
    tick();
  });
}

/** Resolves when the connection received at least `bytes`, or rejects after `timeoutMs`. */
function sink(c: Conn, bytes: number, timeoutMs: number): Promise<{ bytes: number; firstMs: number; lastMs: number }> {
  const result = () => ({ bytes: c.bytes, firstMs: c.firstMs, lastMs: c.lastMs });
  if (c.bytes >= bytes) return Promise.resolve(result());
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      c.onData = undefined;
      reject(new Error(`sink: ${c.bytes} of ${bytes} bytes after ${timeoutMs} ms`));
    }, timeoutMs);
    c.onData = () => {
      if (c.bytes < bytes) return;
      clearTimeout(timer);
      c.onData = undefined;
      resolve(result());
    };
  });
}

async function handle(req: Request): Promise<Record<string, unknown>> {
  switch (req.op) {
    case 'listen': {
      if (!server) {
        server = createServer((s) => {
          const w = acceptWaiters.shift();
          if (w) w(s);
          else accepted.push(s);
        });
        await new Promise<void>((r) => server!.listen(0, '127.0.0.1', 511, r));
      }
      return { port: (server.address() as { port: number }).port };
    }
    case 'connect': {
      const s = connect({ host: '127.0.0.1', port: Number(req.port) });
      await new Promise<void>((resolve, reject) => {
        s.once('connect', resolve);
        s.once('error', reject);
      });
      return { conn: adopt(s) };
    }
    case 'accept': {
      const s = accepted.shift() ?? (await new Promise<Socket>((r) => acceptWaiters.push(r)));
      return { conn: adopt(s) };
    }
    case 'blast':
      return blast(conn(req.conn), Number(req.bytes), Number(req.chunk ?? 1024 * 1024));
    case 'udp': {
      // a UDP socket on 127.0.0.1 counting the datagrams' bytes, with room for the producer's whole window
      // (fan-out: 1,000 in flight, ~700 bytes of kernel memory each) while the observers' clients take the
      // CPU: the default 208 KiB dropped hundreds a round
      const socket = createSocket({ type: 'udp4', recvBufferSize: 4 * 1024 * 1024 });
      const id = nextConn++;
      const u = { socket, bytes: 0, firstMs: 0, lastMs: 0, end: () => socket.close() };
      socket.on('message', (m: Buffer) => received(u, m.length));
      await new Promise<void>((r) => socket.bind(0, '127.0.0.1', r));
      udps.set(id, u);
      return { conn: id, port: socket.address().port };
    }
    case 'sink':
      return sink(conn(req.conn), Number(req.bytes), Number(req.timeoutMs ?? 60_000));
    case 'ticks':
      return ticks(conn(req.conn), Number(req.rate), Number(req.count), Number(req.size));
    case 'feed': {
      // keep the connection's send buffer full until it closes (a socket that always has data to read)
      const c = conn(req.conn);
      const block = Buffer.alloc(64 * 1024, 0x63);
      const fill = () => {
        while (!c.socket.destroyed && c.socket.write(block));
      };
      c.socket.on('drain', fill);
      fill();
      return {};
    }
    case 'wakeEvery': {
      // SO_RCVLOWAT: the kernel wakes this reader once `bytes` are queued, not on every segment (Node has no
      // setsockopt; the fd is the connection's own, through the repository's addon)
      const c = conn(req.conn);
      const fd = (c.socket as unknown as { _handle: { fd: number } })._handle.fd;
      native.setsockoptInt(fd, C.SOL_SOCKET, C.SO_RCVLOWAT, Number(req.bytes));
      return { bytes: native.getsockoptInt(fd, C.SOL_SOCKET, C.SO_RCVLOWAT) };
    }
    case 'count': {
      const c = find(req.conn);
      if (!c) throw new Error(`no connection ${String(req.conn)}`);
      return { bytes: c.bytes, firstMs: c.firstMs, lastMs: c.lastMs };
    }
    case 'close': {
      const c = find(req.conn);
      if (c) {
        c.end(Boolean(req.reset));
        conns.delete(Number(req.conn));
        udps.delete(Number(req.conn));
      }
      return {};
    }
    default:
      throw new Error(`unknown op ${req.op}`);
  }
}

serveHarness(handle);

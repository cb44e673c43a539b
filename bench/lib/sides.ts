import type { WebSocket } from 'ws';
import type { Ctx } from './context.js';
import { cpuSeconds, treeCpuSeconds } from './procs.js';
import { closeWs, openWs } from './ws-client.js';

/** A WebSocket ⇄ TCP relay under test: how to get a connected pair through it, and its CPU. */
export interface Side {
  name: string;
  /** Sets up a WebSocket and the peer's TCP connection joined by the relay; returns them and a cleanup. */
  connect(ctx: Ctx): Promise<{ ws: WebSocket; conn: number; cleanup: () => Promise<void> }>;
  cpu(): number;
  /** A slow baseline: quick mode moves a quarter of the bytes through it (GB/s and CPU/GB are per byte). */
  slow?: boolean;
}

export function sockctlSide(ctx: Ctx): Side {
  const { service, peer } = ctx;
  return {
    name: 'sockctl',
    cpu: () => cpuSeconds(service.pid),
    async connect() {
      // the HTTP API: a listener (create, bind, listen), the peer connects, accept, the consumer stream
      const l = await service.listener();
      const { conn } = await peer.call<{ conn: number }>('connect', { port: l.local!.port });
      const a = await service.accept(l.id);
      const ws = await openWs(service.streamUrl(a.id));
      return {
        ws,
        conn,
        cleanup: async () => {
          await closeWs(ws);
          await peer.call('close', { conn });
          await service.close(a.id);
          await service.close(l.id);
        },
      };
    },
  };
}

/**
 * A relay that connects to the peer's listener for each WebSocket (the net+ws baseline, websockify).
 * `forks`: it serves each connection from a process of its own, whose CPU counts too; `slow`: see Side.
 */
export function relaySide(name: string, url: (peerPort: number) => string, pid: number, opts: { forks?: boolean; slow?: boolean } = {}): Side {
  return {
    name,
    slow: opts.slow ?? false,
    cpu: () => (opts.forks ? treeCpuSeconds(pid) : cpuSeconds(pid)),
    async connect(ctx) {
      const { port } = await ctx.peer.call<{ port: number }>('listen');
      const ws = await openWs(url(port));
      const { conn } = await ctx.peer.call<{ conn: number }>('accept');
      return {
        ws,
        conn,
        cleanup: async () => {
          await closeWs(ws);
          await ctx.peer.call('close', { conn });
        },
      };
    },
  };
}

export function relaySides(ctx: Ctx): Side[] {
  const sides = [relaySide('net+ws relay', (p) => `ws://127.0.0.1:${ctx.relay.port}/?port=${p}`, ctx.relay.proc.pid)];
  // websockify relays to the one target it was started with: the peer's listener
  if (ctx.websockify) sides.push(relaySide('websockify', () => `ws://127.0.0.1:${ctx.websockify!.port}/`, ctx.websockify.proc.pid, { forks: true, slow: true }));
  return sides;
}

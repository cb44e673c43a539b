import { spawnNode, within, type Proc } from './procs.js';

/**
 * The harness's handle on a helper process driven over IPC (bench/lib/peer.ts, bench/lib/observers.ts):
 * one request `{id, op, ...}`, one reply `{id, ...}` or `{id, error}`; every call is bounded in time.
 */
export class IpcChild {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (r: any) => void; reject: (e: Error) => void }>();

  private constructor(readonly proc: Proc) {
    proc.child.on('message', (m: { id: number; error?: string }) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.error) p.reject(new Error(`${proc.name}: ${m.error}`));
      else p.resolve(m);
    });
    proc.child.once('exit', () => {
      for (const p of this.pending.values()) p.reject(new Error(`${proc.name} exited: ${proc.output()}`));
      this.pending.clear();
    });
  }

  static async start(name: string, script: string): Promise<IpcChild> {
    const proc = spawnNode(name, script, { ipc: true });
    await within(20_000, `${name} start`, new Promise<void>((resolve) => proc.child.once('message', () => resolve())));
    return new IpcChild(proc);
  }

  /** One request; every call is bounded by `timeoutMs`. */
  call<T = Record<string, number>>(op: string, args: Record<string, unknown> = {}, timeoutMs = 30_000): Promise<T> {
    const id = this.nextId++;
    return within(
      timeoutMs,
      `${this.proc.name} ${op}`,
      new Promise<T>((resolve, reject) => {
        this.pending.set(id, { resolve, reject });
        this.proc.child.send({ id, op, ...args });
      }),
    );
  }

  async stop(): Promise<void> {
    await this.proc.stop(2000);
  }
}

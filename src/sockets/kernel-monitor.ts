import type { EventLog } from '../events/event-log.js';
import { withProcSnapshot } from './kernel.js';
import type { ManagedSocket } from './managed-socket.js';

export interface KernelMonitorOptions {
  intervalMs: number;
  /** Sockets looked at per tick at most (the most recent first), so a huge registry costs bounded time. */
  maxSockets: number;
  /** How long after close a TCP socket is still watched (its TIME_WAIT or FIN_WAIT2 ending). */
  afterCloseMs: number;
}

/**
 * Turns what only the kernel knows into events, for dashboards (DESIGN.md section 5): a TCP socket's
 * kernel state (`tcp` events: SYN_SENT → ESTABLISHED → FIN_WAIT2 → TIME_WAIT ...) and a listener's accept
 * queue (`pending` events; TCP and Unix stream/seqpacket listeners), and the datagrams the kernel dropped
 * for a full receive buffer (`dropped`). Of the Unix sockets only listeners are sampled: nothing else of
 * theirs makes events.
 * The kernel has no notification for these, so they are sampled, and only while a dashboard observes
 * (`/v1/events`; a consumer stream alone does not pay for sampling). Each change is one event.
 */
export class KernelMonitor {
  private readonly seen = new Map<string, { tcp?: string | undefined; pending?: number | null; drops?: number | undefined }>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly events: EventLog,
    private readonly sockets: () => Iterable<ManagedSocket>,
    private readonly opts: KernelMonitorOptions,
  ) {
    this.timer = setInterval(() => this.tick(), opts.intervalMs).unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One sample of every watched socket; public for tests that want a sample now. */
  tick(): void {
    if (this.events.observers === 0) {
      this.seen.clear();
      return;
    }
    withProcSnapshot(() => this.sample());
  }

  private sample(): void {
    const now = Date.now();
    const watched: ManagedSocket[] = [];
    for (const s of this.sockets()) {
      if (s.family === 'AF_UNIX') {
        // only an open listener (its accept queue); a closed one leaves nothing behind in the kernel
        if (s.state === 'listening') watched.push(s);
        continue;
      }
      if (s.type === 'SOCK_SEQPACKET') continue;
      if (s.type !== 'SOCK_STREAM' && !s.isOpen) continue;
      if (!s.isOpen && now - (s.closedAt?.getTime() ?? 0) > this.opts.afterCloseMs) continue;
      watched.push(s);
    }
    const alive = new Set<string>();
    for (const s of watched.slice(-this.opts.maxSockets)) {
      alive.add(s.id);
      const kernel = s.toResource().kernel;
      const before = this.seen.get(s.id);
      const now = {
        tcp: kernel.tcpState,
        pending: s.state === 'listening' ? (kernel.acceptQueue ?? null) : null,
        drops: kernel.drops,
      };
      this.seen.set(s.id, now);
      if (!before) continue; // the first sample is the baseline: the resource already shows it
      if (now.tcp !== before.tcp && now.tcp !== undefined)
        this.events.emit(s.id, 'tcp', { state: now.tcp, previous: before.tcp ?? null });
      if (now.pending !== null && now.pending !== before.pending)
        this.events.emit(s.id, 'pending', { pending: now.pending, backlog: kernel.backlog ?? null });
      if (now.drops !== undefined && before.drops !== undefined && now.drops > before.drops)
        this.events.emit(s.id, 'dropped', { dropped: now.drops - before.drops, total: now.drops });
    }
    for (const id of this.seen.keys()) if (!alive.has(id)) this.seen.delete(id);
  }
}

import type { SocketState } from '../../schemas/socket.js';

/**
 * The lifecycle of a descriptor as the user drives it (DESIGN.md section 3). The kernel's own view
 * (TCP states, a peer's FIN or RST) is reported beside it, in `kernel`, and never moves this one.
 *
 *                 bind            listen
 *     created ───────────▶ bound ─────────▶ listening
 *        │  ▲                │  ▲
 *        │  │ refused        │  │ refused           accept() makes a new socket,
 *        │  │                ▼  │                   born `connected`
 *        └──┴────────▶ connecting ─────────▶ connected ◀─┐
 *           connect       (EINPROGRESS)   done    │      │ (UDP connect again)
 *                                                 └──────┘
 *     any state ──close──▶ closed
 *
 * `created → listening` and `created → connected` happen too: listen and connect bind implicitly.
 */
export const TRANSITIONS: Readonly<Record<SocketState, readonly SocketState[]>> = {
  created: ['bound', 'listening', 'connecting', 'connected', 'closed'],
  bound: ['listening', 'connecting', 'connected', 'closed'],
  listening: ['closed'],
  connecting: ['connected', 'created', 'bound', 'closed'],
  connected: ['connected', 'bound', 'closed'],
  closed: [],
};

export function canTransition(from: SocketState, to: SocketState): boolean {
  return TRANSITIONS[from].includes(to);
}

/**
 * The child side of a benchmark helper process: answers each `{id, op, ...}` message from the harness with
 * `{id, ...result}` (or `{id, error}`), exits when the harness goes away, and says it is ready.
 */
export function serveHarness<R extends { id: number }>(handle: (req: R) => Promise<object>): void {
  process.on('message', (req: R) => {
    handle(req).then(
      (r) => process.send!({ id: req.id, ...r }),
      (e: unknown) => process.send!({ id: req.id, error: e instanceof Error ? e.message : String(e) }),
    );
  });
  process.on('disconnect', () => process.exit(0)); // the harness went away
  process.send!({ id: 0, ready: true });
}

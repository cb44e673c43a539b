import { createHook } from 'node:async_hooks';

/**
 * Keeps one of `process.nextTick`'s tick objects alive for the life of the process, and with it the maps
 * (hidden classes) that every tick object gets. Node 20's nextTick builds each tick object with a literal
 * whose first keys are computed (`{[async_id_symbol]: …, [trigger_async_id_symbol]: …, callback, args}`),
 * and such a literal's later maps are held only weakly by V8's transition tree. When a few mark-compacts
 * run while no tick object is alive (during start-up, or the memory reducer's collections when idle), those
 * maps die, the next tick objects get new ones, and V8 turns nextTick's feedback for the literal
 * megamorphic for good: from then on its optimized code calls into the runtime for every tick.
 *
 * Measured on bench scenario 4's send calls (`perf record` of five identical services): four had it, and
 * spent 5-6% of their CPU in Runtime_DefineKeyedOwnPropertyInLiteral (each HTTP response and each stream
 * write schedules ticks); with the pin none of five did. The bare fastify baseline never showed it. Which
 * process falls into it depends on when its collections happen, so it was one cause of identical services
 * differing in CPU per call from run to run. test/pin-tick-maps.test.ts shows the effect on this Node.
 *
 * Imported first by main.ts so that it runs before the collections of start-up.
 */
export const pinnedTickObject: object | undefined = (() => {
  let tick: object | undefined;
  const hook = createHook({
    init(_id, type, _trigger, resource) {
      if (type === 'TickObject') tick ??= resource as object;
    },
  });
  hook.enable();
  process.nextTick(() => undefined);
  hook.disable();
  return tick;
})();

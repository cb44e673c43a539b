import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * How many of nextTick's literal feedback slots V8 turned megamorphic in test/fixtures/tick-maps.ts. V8 prints
 * to stdout, which goes to a file: through a pipe its output came out cut short under vitest.
 */
function megamorphicSlotsAfterCollections(pin: boolean): number {
  const dir = mkdtempSync(join(tmpdir(), 'sockctl-tick-'));
  try {
    const file = join(dir, 'out.txt');
    const fd = openSync(file, 'w');
    try {
      execFileSync(
        process.execPath,
        ['--allow-natives-syntax', '--expose-gc', '--import', 'tsx', 'test/fixtures/tick-maps.ts', ...(pin ? ['pin'] : [])],
        { stdio: ['ignore', fd, 'inherit'], timeout: 30_000 },
      );
    } finally {
      closeSync(fd);
    }
    const out = readFileSync(file, 'utf8');
    expect(out).toContain('DefineKeyedOwnPropertyInLiteral'); // the literal's slots were printed
    return out.split('\n').filter((l) => l.includes('DefineKeyedOwnPropertyInLiteral MEGAMORPHIC')).length;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('pinned tick-object maps (src/pin-tick-maps.ts)', () => {
  it('keep nextTick fast after collections that would otherwise make it megamorphic', () => {
    // the V8 behaviour the pin works around, on this Node: without it the feedback goes megamorphic
    expect(megamorphicSlotsAfterCollections(false), 'this Node keeps the maps by itself: the pin can go').toBeGreaterThan(0);
    expect(megamorphicSlotsAfterCollections(true)).toBe(0);
  });
});

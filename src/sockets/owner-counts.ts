/**
 * Adds `by` to an owner's count (open sockets, listeners, retained bytes); a count that reaches 0 leaves
 * the map, which so holds the owners with something counted only.
 */
export function count(counts: Map<string, number>, owner: string, by: number): void {
  const n = (counts.get(owner) ?? 0) + by;
  if (n > 0) counts.set(owner, n);
  else counts.delete(owner);
}

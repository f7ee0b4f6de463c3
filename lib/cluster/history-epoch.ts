import { randomBytes } from 'node:crypto'

/**
 * How epochs are made, shared by every History backend (the Redis one does
 * the same in Lua, see `redis/history-lua.ts`).
 *
 * A topic's state (its offset counter and epoch, "the head") lives only
 * while it holds publications: it goes `ttlMs` after the last one, so a
 * million idle topics cost nothing. Every life of a head therefore needs
 * its own epoch, or offsets restarting at 1 would look like duplicates to
 * a subscriber that saw 41 of the previous life. An epoch is
 * `<base>.<start>`: the store's base (random per process for memory; per
 * Redis dataset, so a restart without persistence changes it) and the time
 * the head was created, in ms of the store's clock.
 *
 * A topic without a head reports offset 0 and the epoch `<base>.<now>`:
 * "empty at this moment". Reading after such a position returns the
 * publications of a head created since, from offset 1, when that is sure
 * to be all of them: the same base (no restart), the head started at or
 * after that moment, it still holds its offset 1, and less than `ttlMs`
 * has passed (any head created and lost in between would have lived at
 * least `ttlMs`). So the first publication into an idle topic does not
 * reset its subscribers. Offset 1 of a new epoch after offset 0 of any
 * epoch is a continuation, not a gap.
 */
export function newBase (): string {
  // Hex only: no '.', which separates the start.
  return randomBytes(8).toString('hex')
}

export function epochOf (base: string, startMs: number): string {
  return `${base}.${startMs}`
}

export interface ParsedEpoch {
  base: string
  startMs: number
}

export function parseEpoch (epoch: string): ParsedEpoch | null {
  const dot = epoch.lastIndexOf('.')
  if (dot <= 0) return null
  const start = epoch.slice(dot + 1)
  if (!/^\d{1,16}$/.test(start)) return null
  return { base: epoch.slice(0, dot), startMs: Number(start) }
}

/**
 * Whether `since` (offset 0, "empty at its moment") may be read as the
 * start of a head of base `base` created at `headStartMs` (null: no head).
 */
export function emptyCovers (sinceEpoch: string, base: string, headStartMs: number | null, nowMs: number, ttlMs: number): boolean {
  const seen = parseEpoch(sinceEpoch)
  if (seen === null || seen.base !== base) return false
  if (nowMs - seen.startMs >= ttlMs) return false
  return headStartMs === null || headStartMs >= seen.startMs
}

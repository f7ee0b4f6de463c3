import { SourceError } from '../../errors.js'
import type { ReadEntry } from './stream-record.js'

/** Reading the replies of the stream commands, which ioredis hands back untyped. */

/** One stream's part of an XREADGROUP reply. */
export interface StreamBatch {
  stream: string
  entries: ReadEntry[]
  /**
   * Pending ids whose entry is gone from the stream (trimmed or deleted
   * before it was acknowledged): Redis answers them with no fields.
   */
  gone: string[]
  /** How many ids the reply had for this stream, gone ones included (what COUNT limits). */
  size: number
  /** The last id in the reply, gone or not: where a read of the pending list goes on from. */
  last: string | null
}

/** XREADGROUP: null (a BLOCK that timed out) or `[[stream, [[id, [field, value…] | null]…]]…]`. */
export function parseRead (reply: unknown): StreamBatch[] {
  if (reply === null) return []
  const batches: StreamBatch[] = []
  for (const item of list(reply, 'XREADGROUP')) {
    const [stream, items] = list(item, 'XREADGROUP stream')
    const name = text(stream, 'XREADGROUP stream name')
    const batch: StreamBatch = { stream: name, entries: [], gone: [], size: 0, last: null }
    for (const raw of list(items, 'XREADGROUP entries')) {
      const [id, flat] = list(raw, 'XREADGROUP entry')
      const entryId = text(id, 'XREADGROUP entry id')
      batch.size++
      batch.last = entryId
      if (flat === null) {
        batch.gone.push(entryId)
        continue
      }
      const pairs = list(flat, 'XREADGROUP fields').map((value) => text(value, 'XREADGROUP field'))
      const fields: Record<string, string> = {}
      // The first occurrence of a field wins, as in XRANGE readers that build a map.
      for (let i = 0; i + 1 < pairs.length; i += 2) fields[pairs[i] as string] ??= pairs[i + 1] as string
      batch.entries.push({ entry: { stream: name, id: entryId, fields }, pairs })
    }
    batches.push(batch)
  }
  return batches
}

/** XAUTOCLAIM … JUSTID: `[next cursor, [claimed ids], [ids gone from the stream]]`. */
export function parseClaim (reply: unknown): { cursor: string, claimed: number } {
  const [cursor, ids] = list(reply, 'XAUTOCLAIM')
  return { cursor: text(cursor, 'XAUTOCLAIM cursor'), claimed: list(ids, 'XAUTOCLAIM ids').length }
}

/**
 * XINFO GROUPS: this group's entries not yet delivered to it (`lag`, which
 * Redis cannot always tell: then null) plus those delivered and not
 * acknowledged (`pending`). Null when the group is not there.
 */
export function parseGroupLag (reply: unknown, group: string): number | null {
  for (const item of list(reply, 'XINFO GROUPS')) {
    const info = pairsOf(item)
    if (info.get('name') !== group) continue
    const lag = info.get('lag')
    const pending = info.get('pending')
    if (typeof lag !== 'number' || typeof pending !== 'number') return null
    return lag + pending
  }
  return null
}

function pairsOf (value: unknown): Map<string, unknown> {
  const flat = list(value, 'XINFO GROUPS group')
  const out = new Map<string, unknown>()
  for (let i = 0; i + 1 < flat.length; i += 2) out.set(String(flat[i]), flat[i + 1])
  return out
}

// Only the kind of a bad value is named: it may be a piece of an entry, and payloads are never logged.
function list (value: unknown, what: string): unknown[] {
  if (!Array.isArray(value)) throw new SourceError(`unexpected ${what} reply from Redis (${value === null ? 'null' : typeof value}, not an array)`)
  return value
}

function text (value: unknown, what: string): string {
  if (typeof value !== 'string') throw new SourceError(`unexpected ${what} in a reply from Redis (${value === null ? 'null' : typeof value}, not a string)`)
  return value
}

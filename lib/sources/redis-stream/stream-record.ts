import type { StreamEntry } from '../records.js'
import type { MapResult, SourceRecord } from '../source.js'
import { BadRecord, parseDefault } from '../targets.js'

/** An entry as read, with its fields in Redis's order (what a dead letter copies). */
export interface ReadEntry {
  entry: StreamEntry
  /** field, value, field, value…: a field named twice, or named like an index, keeps its place here. */
  pairs: readonly string[]
}

const ADDRESSES = ['topic', 'userId', 'clientId', 'broadcast'] as const

/**
 * The record the runner gets for one entry. Its key is the entry's place,
 * which never changes, so an entry read twice (claimed after a crash,
 * re-read after a refusal) is de-duplicated by the hub.
 */
export function toRecord (read: ReadEntry): SourceRecord<StreamEntry> {
  const { entry } = read
  return {
    raw: entry,
    coordinates: { stream: entry.stream, id: entry.id },
    key: `stream:${entry.stream}:${entry.id}`,
    text: () => entry.fields.payload ?? entry.fields.message ?? null,
    defaultTargets: () => defaultTargets(entry.fields)
  }
}

/**
 * Without a `map`, an entry is one of:
 *  - a `payload` field holding one JSON document of the default shape
 *    (`{ topic | userId | clientId | broadcast, message, idempotencyKey? }`
 *    or an array of them), as `XADD s * payload '{"topic":"room","message":{}}'`;
 *  - the target spread over fields, as `XADD s * topic room message '{"n":1}'`:
 *    one of `topic`, `userId`, `clientId` or `broadcast` (`true`), `message`
 *    as JSON text, and `idempotencyKey` on a topic target.
 * `payload` wins when an entry has both. The result is checked by the
 * runner like any other (one address, a message, a key only on a topic).
 */
export function defaultTargets (fields: Readonly<Record<string, string>>): MapResult {
  if (fields.payload !== undefined) return parseDefault(fields.payload)
  if (!ADDRESSES.some((address) => fields[address] !== undefined)) {
    throw new BadRecord('invalid_target', 'the entry has neither a payload field nor one of topic, userId, clientId, broadcast')
  }
  const text = fields.message
  if (text === undefined) throw new BadRecord('invalid_target', 'the entry has no message field')
  let message: unknown
  try {
    message = JSON.parse(text)
  } catch (err) {
    throw new BadRecord('invalid_json', 'the message field is not valid JSON', { cause: err })
  }
  const target: Record<string, unknown> = { message }
  for (const address of ADDRESSES) {
    const value = fields[address]
    if (value === undefined) continue
    // A field is text; `broadcast` is the one address that is not.
    target[address] = address === 'broadcast' && value === 'true' ? true : value
  }
  if (fields.idempotencyKey !== undefined) target.idempotencyKey = fields.idempotencyKey
  return target as MapResult
}

import type { OutboxRow } from '../records.js'
import type { MapResult, SourceRecord } from '../source.js'
import { BadRecord } from '../targets.js'

/** A row as the source hands it to the runner; `table` is the name as configured. */
export function outboxRecord (table: string, row: OutboxRow): SourceRecord<OutboxRow> {
  return {
    raw: row,
    coordinates: { table, id: row.id },
    // A row's id is never reused (bigserial), so it names the row for good.
    key: `outbox:${table}:${row.id}`,
    text: () => row.message === undefined || row.message === null ? null : JSON.stringify(row.message),
    defaultTargets: () => rowTargets(row)
  }
}

const present = (value: unknown): value is string => typeof value === 'string'

/**
 * The default map: the row's columns say where its `message` goes.
 * Exactly one of `topic`, `user_id`, `client_id` or `broadcast = true`;
 * `idempotency_key`, when set, is a topic publication's key.
 */
export function rowTargets (row: OutboxRow): MapResult {
  const { topic, user_id: userId, client_id: clientId, broadcast, message, idempotency_key: key } = row
  const named = [topic, userId, clientId].filter((value) => value !== null && value !== undefined).length + (broadcast === true ? 1 : 0)
  if (named !== 1) throw new BadRecord('invalid_target', 'a row names exactly one of topic, user_id, client_id, broadcast')
  if (!('message' in row)) throw new BadRecord('invalid_target', 'the table has no message column')
  if (key !== null && key !== undefined && (!present(key) || !present(topic))) {
    throw new BadRecord('invalid_target', 'idempotency_key is text, on a topic row only')
  }
  if (present(topic)) return present(key) ? { topic, message, idempotencyKey: key } : { topic, message }
  if (present(userId)) return { userId, message }
  if (present(clientId)) return { clientId, message }
  if (broadcast === true) return { broadcast: true, message }
  throw new BadRecord('invalid_target', 'topic, user_id and client_id are text')
}

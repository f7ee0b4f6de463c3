import type { PostgresOutboxSourceConfig } from '../../options/source-options.js'
import { outboxNames, quoteColumn } from './outbox-names.js'

/** The statements one outbox source runs, built once from its options. */
export interface OutboxSql {
  /** The rows still to read, oldest first, locked until the claim commits. Parameter: the batch size. */
  claim: string
  /** Acknowledges delivered rows (`delete` or `mark`). Parameter: their ids. */
  delivered: string
  /** Writes each bad row's reason into the dead-letter column. Parameters: ids, reasons. */
  deadLettered: string
  /** How many rows are still to read. */
  lag: string
  listen: string
  unlisten: string
}

export function outboxSql (config: Pick<PostgresOutboxSourceConfig, 'table' | 'channel' | 'onDelivered' | 'ordered' | 'deadLetter'>): OutboxSql {
  const names = outboxNames(config.table, config.channel)
  const table = names.table
  // The failed column is read whether or not dead-lettering is on: it is
  // in the table `outboxDdl` makes, the partial index is built on it (a
  // query that leaves it out cannot use the index), and a row someone set
  // aside by hand stays set aside.
  const failed = quoteColumn(config.deadLetter?.column ?? 'failed_reason')
  const pending = `delivered_at IS NULL AND ${failed} IS NULL`
  // SKIP LOCKED lets several instances claim side by side, each taking the
  // next rows no one holds. An ordered source has one reader, which waits
  // instead: a row held by someone else must not be passed over.
  const lock = config.ordered ? 'FOR UPDATE' : 'FOR UPDATE SKIP LOCKED'
  return {
    claim: `SELECT * FROM ${table} WHERE ${pending} ORDER BY id LIMIT $1 ${lock}`,
    delivered: config.onDelivered === 'delete'
      ? `DELETE FROM ${table} WHERE id = ANY($1::bigint[])`
      : `UPDATE ${table} SET delivered_at = now() WHERE id = ANY($1::bigint[])`,
    deadLettered: `UPDATE ${table} AS o SET ${failed} = d.reason FROM unnest($1::bigint[], $2::text[]) AS d(id, reason) WHERE o.id = d.id`,
    lag: `SELECT count(*) AS n FROM ${table} WHERE ${pending}`,
    listen: `LISTEN "${names.channel}"`,
    unlisten: `UNLISTEN "${names.channel}"`
  }
}

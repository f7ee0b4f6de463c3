import { createHash } from 'node:crypto'
import { InvalidArgumentError } from '../../errors.js'

/*
 * The names an outbox uses in SQL. Each is checked against these patterns
 * (the options schema uses the same ones) and then double-quoted, so a
 * name is never SQL text of its own and means exactly what was written:
 * `ws_outbox`, not `WS_OUTBOX`, and a reserved word still works.
 */

/**
 * A table, optionally schema-qualified. The table part stops at 55
 * characters so the index and trigger named after it (`<table>_pending`,
 * `<table>_notify`) fit PostgreSQL's 63: a longer name would be cut short,
 * and two tables could end up sharing one trigger function.
 */
export const TABLE_PATTERN = '^([A-Za-z_][A-Za-z0-9_]{0,62}\\.)?[A-Za-z_][A-Za-z0-9_]{0,54}$'
/** A `LISTEN` channel or a column. */
export const IDENTIFIER_PATTERN = '^[A-Za-z_][A-Za-z0-9_]{0,62}$'

const table = new RegExp(TABLE_PATTERN)
const identifier = new RegExp(IDENTIFIER_PATTERN)

export interface OutboxNames {
  /** The table, quoted (and schema-qualified when it was). */
  table: string
  /** The partial index of rows still to read; unqualified, as CREATE INDEX wants it. */
  index: string
  /** The trigger function, quoted, in the table's schema. */
  notifyFunction: string
  /** The trigger; unqualified, it belongs to the table. */
  trigger: string
  /** The channel, unquoted: the text `pg_notify` is given. */
  channel: string
}

const quote = (name: string): string => `"${name}"`

/** Checks and quotes an outbox table's names; the channel defaults to the table name without its schema. */
export function outboxNames (tableName: string, channel?: string): OutboxNames {
  if (!table.test(tableName)) throw new InvalidArgumentError(`fastify-ws-hub: outbox table ${JSON.stringify(tableName)} must be a table name (letters, digits, _; up to 55 characters), optionally schema-qualified`)
  const parts = tableName.split('.')
  const name = parts[parts.length - 1] as string
  const schema = parts.length === 2 ? `${quote(parts[0] as string)}.` : ''
  const listen = channel ?? name
  if (!identifier.test(listen)) throw new InvalidArgumentError(`fastify-ws-hub: outbox channel ${JSON.stringify(listen)} must be an identifier (letters, digits, _; up to 63 characters)`)
  return {
    table: schema + quote(name),
    index: quote(`${name}_pending`),
    notifyFunction: `${schema}${quote(`${name}_notify`)}`,
    trigger: quote(`${name}_notify`),
    channel: listen
  }
}

/** Quotes a column name that has been checked against `IDENTIFIER_PATTERN`. */
export function quoteColumn (column: string): string {
  if (!identifier.test(column)) throw new InvalidArgumentError(`fastify-ws-hub: outbox column ${JSON.stringify(column)} must be an identifier`)
  return quote(column)
}

/**
 * The advisory lock key of an `ordered` outbox: a stable 64-bit hash of
 * the table name, as every instance of the hub writes it (they share one
 * configuration), as the decimal text of a signed bigint.
 */
export function lockKey (tableName: string): string {
  return createHash('sha256').update(`fastify-ws-hub:postgres-outbox:${tableName}`).digest().readBigInt64BE(0).toString()
}

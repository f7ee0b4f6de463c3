import { outboxNames } from './outbox-names.js'

/**
 * The SQL that creates an outbox table, the one source of truth for its
 * shape (the README prints this function's output). Every statement is
 * idempotent, so it can run at each deploy. Needs PostgreSQL 14 or later
 * (`CREATE OR REPLACE TRIGGER`).
 *
 * - `message` is the publication; exactly one of `topic`, `user_id`,
 *   `client_id` or `broadcast = true` says where it goes.
 * - The partial index holds only the rows still to read, so a claim and
 *   the lag count stay cheap however many delivered (`mark`) or failed
 *   rows the table keeps.
 * - The trigger runs once per INSERT statement, not per row: one wake-up
 *   is enough, since the hub reads everything pending. PostgreSQL sends
 *   notifications at commit (and never for a rolled-back transaction), so
 *   the hub wakes exactly when there is something it can read.
 */
export function outboxDdl (table = 'ws_outbox', channel?: string): string {
  const names = outboxNames(table, channel)
  return `CREATE TABLE IF NOT EXISTS ${names.table} (
  id bigserial PRIMARY KEY,
  topic text,
  user_id text,
  client_id text,
  broadcast boolean DEFAULT false,
  message jsonb NOT NULL,
  idempotency_key text,
  created_at timestamptz DEFAULT now(),
  delivered_at timestamptz,
  failed_reason text
);

CREATE INDEX IF NOT EXISTS ${names.index} ON ${names.table} (id)
  WHERE delivered_at IS NULL AND failed_reason IS NULL;

CREATE OR REPLACE FUNCTION ${names.notifyFunction}() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('${names.channel}', '');
  RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER ${names.trigger}
  AFTER INSERT ON ${names.table}
  FOR EACH STATEMENT EXECUTE FUNCTION ${names.notifyFunction}();
`
}

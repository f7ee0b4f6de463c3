/**
 * The PostgreSQL outbox source against a real PostgreSQL: the shared
 * source suite, then what is the outbox's own (commit and rollback, the
 * NOTIFY wake-up, SKIP LOCKED, `mark`, the dead-letter column, the
 * ordered lock, the default row mapping, the DDL). DATABASE_URL names
 * the database (default postgres://postgres@127.0.0.1:5432/test); the
 * file is skipped when nothing answers there.
 */
import t from 'tap'
import pg from 'pg'
import { normalizeSources, type PostgresOutboxSourceConfig } from '../lib/options/source-options.js'
import { outboxDdl } from '../lib/sources/postgres-outbox/outbox-ddl.js'
import { outboxNames } from '../lib/sources/postgres-outbox/outbox-names.js'
import { outboxRecord } from '../lib/sources/postgres-outbox/outbox-record.js'
import { PostgresOutboxSource } from '../lib/sources/postgres-outbox/postgres-outbox-source.js'
import type { OutboxRow } from '../lib/sources/records.js'
import { SourceRunner, type SourcePublisher } from '../lib/sources/source-runner.js'
import type { SourceConsumer, SourceContext, SourceRecord, SourceSink, SourceTarget } from '../lib/sources/source.js'
import { BadRecord, targetsOf } from '../lib/sources/targets.js'
import { FakePublisher, sourceSuite, quietLogger } from '../lib/testing/source-suite.js'
import { sleep } from './helpers/source-records.js'
import { until } from './helpers.js'

const url = process.env.DATABASE_URL !== undefined && process.env.DATABASE_URL !== '' ? process.env.DATABASE_URL : 'postgres://postgres@127.0.0.1:5432/test'

async function answers (): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 })
  client.on('error', () => {})
  try {
    await client.connect()
    await client.query('SELECT 1')
    return true
  } catch {
    return false
  } finally {
    await client.end().catch(() => {})
  }
}

const context = (instanceId: string, name = 'postgres-outbox'): SourceContext => ({
  instanceId,
  name,
  log: quietLogger,
  lease: () => { throw new Error('an outbox source holds no hub lease: its ordered lock is PostgreSQL\'s') }
})

function sourceConfig (table: string, extra: Record<string, unknown> = {}): PostgresOutboxSourceConfig {
  const [config] = normalizeSources([{ type: 'postgres-outbox', connectionString: url, table, ...extra }])
  return config as PostgresOutboxSourceConfig
}

let instances = 0
const instanceId = (): string => `instance-${process.pid}-${++instances}`

const available = await answers()

t.test('postgres outbox', { skip: available ? false : `no PostgreSQL answers at ${url}` }, async (t) => {
  const admin = new pg.Pool({ connectionString: url, max: 4 })
  admin.on('error', () => {})
  const tables: string[] = []
  t.teardown(async () => {
    for (const table of tables) {
      const names = outboxNames(table)
      await admin.query(`DROP TABLE IF EXISTS ${names.table}; DROP FUNCTION IF EXISTS ${names.notifyFunction}()`)
    }
    await admin.end()
  })

  let count = 0
  /** A fresh outbox table; dropped when the file ends. */
  async function table (): Promise<string> {
    const name = `ws_outbox_test_${process.pid}_${Date.now().toString(36)}_${++count}`
    await admin.query(outboxDdl(name))
    tables.push(name)
    return name
  }

  /** Rows in one INSERT statement (one notification), ids in the order given. */
  async function insert (name: string, rows: ReadonlyArray<Record<string, unknown>>, client: pg.ClientBase | pg.Pool = admin): Promise<void> {
    await client.query(
      `INSERT INTO ${outboxNames(name).table} (topic, user_id, client_id, broadcast, message, idempotency_key)
       SELECT e->>'topic', e->>'user_id', e->>'client_id', coalesce((e->>'broadcast')::boolean, false), e->'message', e->>'idempotency_key'
       FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS x(e, i) ORDER BY i`,
      [JSON.stringify(rows)]
    )
  }

  const room = (n: number, topic = 'room'): Record<string, unknown> => ({ topic, message: { n } })

  async function rowsOf (name: string): Promise<Array<Record<string, unknown>>> {
    const { rows } = await admin.query(`SELECT id, message, delivered_at, failed_reason FROM ${outboxNames(name).table} ORDER BY id`)
    return rows
  }

  interface Running { source: PostgresOutboxSource, runner: SourceRunner }

  async function run (tt: { teardown: (fn: () => unknown) => void }, name: string, publisher: SourcePublisher, extra: Record<string, unknown> = {}, id = instanceId()): Promise<Running> {
    const source = new PostgresOutboxSource(sourceConfig(name, extra), context(id))
    const runner = new SourceRunner({ name: 'outbox', type: 'postgres-outbox', consumer: source, publisher, log: quietLogger, retryMs: 50, maxRetryMs: 200 })
    await runner.start()
    tt.teardown(async () => { await runner.close() })
    return { source, runner }
  }

  /*
   * The suite produces payload texts. A row holds columns and a jsonb
   * message, so it cannot hold '{not json' nor a target without a
   * message (message is NOT NULL): such a text goes in as a row with no
   * target column and the text as a JSON string in `message`, and this
   * wrapper hands the runner that text to parse, as a user's `map` would.
   * Every other text becomes a topic row read by the source's own
   * default mapping.
   */
  function readingTexts (source: PostgresOutboxSource): SourceConsumer {
    const asText = (record: SourceRecord): SourceRecord => {
      const row = record.raw as OutboxRow
      const text = row.message
      if (row.topic !== null || typeof text !== 'string') return record
      return { raw: row, coordinates: record.coordinates, key: record.key, text: () => text }
    }
    return {
      start: async (sink: SourceSink) => {
        await source.start({
          deliver: async (records) => await sink.deliver(records.map(asText)),
          resumed: async () => { await sink.resumed() },
          get closing () { return sink.closing },
          connected: (up, err) => { sink.connected(up, err) }
        })
      },
      lag: async () => await source.lag(),
      active: () => source.active(),
      close: async () => { await source.close() }
    }
  }

  await t.test('the source suite', async (t) => {
    await sourceSuite(t, 'postgres-outbox', {
      place: table,
      consumer: (place, { instanceId }) => readingTexts(new PostgresOutboxSource(sourceConfig(place), context(instanceId))),
      produce: async (place, texts) => {
        await insert(place, texts.map((text) => {
          let value: unknown
          try {
            value = JSON.parse(text)
          } catch {
            return { message: text }
          }
          const target = value as { topic?: unknown, message?: unknown }
          return typeof target.topic === 'string' && 'message' in target ? { topic: target.topic, message: target.message } : { message: text }
        }))
      },
      timeoutMs: 10_000
    })
  })

  await t.test('a row inserted in a transaction that rolls back is never delivered', async (t) => {
    const name = await table()
    const publisher = new FakePublisher()
    await run(t, name, publisher)
    const client = await admin.connect()
    try {
      await client.query('BEGIN')
      await insert(name, [room(1)], client)
      await client.query('ROLLBACK')
    } finally {
      client.release()
    }
    await insert(name, [room(2)])
    await insert(name, [room(3)])
    // The rows committed after it arrive; the rolled-back one would have come first.
    await publisher.waitFor(2, 10_000)
    t.same(publisher.published.map((p) => p.n), [2, 3])
  })

  await t.test('a committed row wakes the source through NOTIFY, long before the poll', async (t) => {
    const name = await table()
    const publisher = new FakePublisher()
    await run(t, name, publisher, { pollIntervalMs: 60_000 })
    const client = await admin.connect()
    let committed: number
    try {
      await client.query('BEGIN')
      await insert(name, [room(1)], client)
      await sleep(300)
      t.equal(publisher.published.length, 0, 'nothing before the commit')
      await client.query('COMMIT')
      committed = Date.now()
    } finally {
      client.release()
    }
    await publisher.waitFor(1, 5_000)
    const ms = Date.now() - committed
    t.ok(ms < 2_000, `delivered ${ms} ms after the commit (the poll is 60 s away)`)
  })

  await t.test('two sources claim side by side (SKIP LOCKED): a claimed batch is skipped, each row is read once', async (t) => {
    const name = await table()
    const gate = new GatedPublisher()
    const other = new FakePublisher()
    await run(t, name, gate, { batchSize: 5 })
    await insert(name, Array.from({ length: 10 }, (_, n) => room(n)))
    // The first source holds rows 0-4 in its claim, waiting on the gate.
    await until(() => gate.waiting > 0, 10_000, 'the first source to be publishing')
    await run(t, name, other, { batchSize: 5 })
    await other.waitFor(5, 10_000)
    t.same(other.published.map((p) => p.n), [5, 6, 7, 8, 9], 'the second read the rows after the held ones')
    gate.open()
    await until(() => gate.published.length === 5, 10_000, 'the first source to finish')
    t.same(gate.published, [0, 1, 2, 3, 4], 'the first kept its own')
    await until(async () => (await rowsOf(name)).length === 0, 10_000, 'every row deleted')
    t.equal(other.published.length, 5, 'nothing read twice')
  })

  await t.test('mark sets delivered_at and keeps the row; it is not read again', async (t) => {
    const name = await table()
    const first = new FakePublisher()
    const { runner, source } = await run(t, name, first, { onDelivered: 'mark' })
    await insert(name, [room(0), room(1), room(2)])
    await first.waitFor(3, 10_000)
    await until(async () => (await rowsOf(name)).every((row) => row.delivered_at instanceof Date), 10_000, 'all three marked')
    t.equal((await rowsOf(name)).length, 3, 'the rows stay')
    t.equal(await source.lag(), 0, 'no lag')
    await runner.close()
    const second = new FakePublisher()
    await run(t, name, second, { onDelivered: 'mark' })
    await insert(name, [room(3)])
    await second.waitFor(1, 10_000)
    t.same(second.published.map((p) => p.n), [3], 'only the new row')
  })

  for (const onDelivered of ['delete', 'mark'] as const) {
    await t.test(`a bad row gets its reason in the dead-letter column and is not read again (${onDelivered})`, async (t) => {
      const name = await table()
      const publisher = new FakePublisher()
      const { runner } = await run(t, name, publisher, { onDelivered, deadLetter: { column: 'failed_reason' } })
      await insert(name, [room(0), { message: { n: 1 } }, room(2, 'unknown:x'), room(3)])
      await publisher.waitFor(2, 10_000)
      t.same(publisher.published.map((p) => p.n), [0, 3])
      await until(async () => (await rowsOf(name)).filter((row) => row.failed_reason !== null).length === 2, 10_000, 'two reasons written')
      const rows = await rowsOf(name)
      const bad = rows.filter((row) => row.failed_reason !== null)
      t.same(bad.map((row) => [(row.message as { n: number }).n, row.failed_reason, row.delivered_at]), [[1, 'invalid_target', null], [2, 'unknown_topic', null]])
      t.equal(rows.length, onDelivered === 'delete' ? 2 : 4, 'good rows deleted or marked, bad ones kept')
      await insert(name, [room(4)])
      await publisher.waitFor(3, 10_000)
      t.same(publisher.published.map((p) => p.n), [0, 3, 4], 'the bad rows were not read again')
      t.equal(runner.status().deadLettered, 2)
    })
  }

  await t.test('ordered: one source reads at a time, in id order; the lock moves when the holder closes', async (t) => {
    const name = await table()
    const a = new FakePublisher()
    const b = new FakePublisher()
    const first = await run(t, name, a, { ordered: true, batchSize: 3 })
    const second = await run(t, name, b, { ordered: true, batchSize: 3 })
    t.equal(first.source.active(), true, 'the first holds the lock')
    t.equal(second.source.active(), false, 'the second waits')
    t.equal(second.runner.status().active, false)
    await insert(name, Array.from({ length: 10 }, (_, n) => room(n)))
    await a.waitFor(10, 10_000)
    t.same(a.published.map((p) => p.n), Array.from({ length: 10 }, (_, n) => n), 'in id order')
    t.equal(b.published.length, 0, 'the second read nothing')
    await first.runner.close()
    await until(() => second.source.active(), 10_000, 'the second to take the lock')
    await insert(name, [room(10), room(11)])
    await b.waitFor(2, 10_000)
    t.same(b.published.map((p) => p.n), [10, 11])
  })

  await t.test('ordered: a holder whose connection dies stops reading, and one instance holds the lock again', async (t) => {
    const name = await table()
    const a = new FakePublisher()
    const b = new FakePublisher()
    const id = instanceId()
    const first = await run(t, name, a, { ordered: true }, id)
    const second = await run(t, name, b, { ordered: true })
    t.equal(first.source.active(), true)
    const { rows } = await admin.query<{ killed: boolean }>(
      'SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity WHERE application_name = $1', [`ws-hub postgres-outbox ${id}`.slice(0, 63)]
    )
    t.ok(rows.length > 0, 'the holder\'s connections were terminated')
    await until(() => first.source.active() !== second.source.active(), 10_000, 'one holder again')
    await insert(name, [room(0), room(1), room(2)])
    await until(() => a.published.length + b.published.length >= 3, 10_000, 'the rows to be read')
    const reader = first.source.active() ? a : b
    t.same(reader.published.map((p) => p.n), [0, 1, 2], 'the holder read them, in order')
  })

  await t.test('lag counts the rows still to read', async (t) => {
    const name = await table()
    const publisher = new FakePublisher()
    publisher.down = true
    const { source } = await run(t, name, publisher)
    await insert(name, [room(0), room(1)])
    t.equal(await source.lag(), 2)
    publisher.down = false
    await publisher.waitFor(2, 10_000)
    await until(async () => await source.lag() === 0, 10_000, 'lag back to 0')
  })

  await t.test('close is idempotent and safe before start; an unreachable database reports down and closes', async (t) => {
    const never = new PostgresOutboxSource(sourceConfig('ws_outbox'), context(instanceId()))
    await never.close()
    await never.close()
    t.equal(await never.lag(), null)
    const config = { ...sourceConfig('ws_outbox'), connectionString: 'postgres://postgres@127.0.0.1:1/test' }
    const source = new PostgresOutboxSource(config, context(instanceId()))
    const runner = new SourceRunner({ name: 'outbox', type: 'postgres-outbox', consumer: source, publisher: new FakePublisher(), log: quietLogger })
    await runner.start()
    t.equal(runner.state(), 'down')
    await Promise.all([runner.close(), source.close()])
  })

  await t.test('outboxDdl runs twice, and a schema-qualified table with its own channel is read', async (t) => {
    const schema = `ws_hub_test_${process.pid}`
    await admin.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`)
    t.teardown(async () => { await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`) })
    const name = `${schema}.Outbox`
    await admin.query(outboxDdl(name, 'Outbox_Channel'))
    await admin.query(outboxDdl(name, 'Outbox_Channel'))
    const publisher = new FakePublisher()
    await run(t, name, publisher, { channel: 'Outbox_Channel', pollIntervalMs: 60_000 })
    await insert(name, [room(1)])
    await publisher.waitFor(1, 5_000)
    t.same(publisher.published.map((p) => p.n), [1])
  })
})

t.test('outbox names are checked before they reach SQL', async (t) => {
  for (const [table, channel] of [['ws outbox', undefined], ['a.b.c', undefined], ['x"; DROP TABLE y; --', undefined], ['ok', 'bad-channel'], ['t'.repeat(56), undefined]] as const) {
    t.throws(() => outboxDdl(table, channel), { code: 'WS_HUB_INVALID_ARGUMENT' }, `${table} / ${String(channel)}`)
  }
  const ddl = outboxDdl()
  t.match(ddl, /CREATE TABLE IF NOT EXISTS "ws_outbox"/)
  t.match(ddl, /pg_notify\('ws_outbox', ''\)/)
  t.match(ddl, /FOR EACH STATEMENT/)
  t.throws(() => normalizeSources([{ type: 'postgres-outbox', connectionString: url, table: 'no such' }]), { code: 'WS_HUB_INVALID_OPTION' })
})

t.test('a row\'s columns say where its message goes', async (t) => {
  const row = (columns: Record<string, unknown>): OutboxRow => ({ id: '7', topic: null, user_id: null, client_id: null, broadcast: false, message: { a: 1 }, idempotency_key: null, ...columns })
  const targets = (columns: Record<string, unknown>): SourceTarget[] => targetsOf(outboxRecord('ws_outbox', row(columns)), undefined)
  t.same(targets({ topic: 'room:1' }), [{ topic: 'room:1', message: { a: 1 } }])
  t.same(targets({ topic: 'room:1', idempotency_key: 'k' }), [{ topic: 'room:1', message: { a: 1 }, idempotencyKey: 'k' }])
  t.same(targets({ user_id: 'u' }), [{ userId: 'u', message: { a: 1 } }])
  t.same(targets({ client_id: 'c' }), [{ clientId: 'c', message: { a: 1 } }])
  t.same(targets({ broadcast: true }), [{ broadcast: true, message: { a: 1 } }])
  for (const bad of [{}, { topic: 'a', user_id: 'u' }, { client_id: 'c', broadcast: true }, { user_id: 'u', idempotency_key: 'k' }]) {
    let reason: unknown
    try {
      targets(bad)
    } catch (err) {
      reason = err instanceof BadRecord ? err.reason : err
    }
    t.equal(reason, 'invalid_target', JSON.stringify(bad))
  }
  const record = outboxRecord('ws_outbox', row({ topic: 'room:1' }))
  t.equal(record.key, 'outbox:ws_outbox:7')
  t.same(record.coordinates, { table: 'ws_outbox', id: '7' })
  t.equal(record.text(), '{"a":1}')
  t.equal(outboxRecord('ws_outbox', row({ message: null })).text(), null)
})

/** A hub whose publishes wait until `open()`: holds a source's claim open. */
class GatedPublisher implements SourcePublisher {
  readonly published: number[] = []
  waiting = 0
  #open: () => void = () => {}
  readonly #gate = new Promise<void>((resolve) => { this.#open = resolve })

  accepting (): boolean { return true }
  problem (): null { return null }

  async publish (target: SourceTarget): Promise<void> {
    this.waiting++
    await this.#gate
    this.published.push((target.message as { n: number }).n)
  }

  open (): void { this.#open() }
}

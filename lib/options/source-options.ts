import Type, { type Static } from 'typebox'
import type { ConnectionOptions } from 'node:tls'
import type { Redis } from 'ioredis'
import type { SASLOptions } from 'kafkajs'
import { OptionsError } from '../errors.js'
import type { SourceConsumer, SourceMap } from '../sources/source.js'
import type { KafkaSourceRecord, MqttSourceRecord, OutboxRow, StreamEntry } from '../sources/records.js'
import { IDENTIFIER_PATTERN, TABLE_PATTERN } from '../sources/postgres-outbox/outbox-names.js'
import { typeOf } from './backend-options.js'
import { opaque, OptionSchema, withDefault, type Filled } from './normalize.js'

/*
 * Event sources (`sources: [...]`): one schema per backend, picked by
 * `type`, with every default here. A source's `map` is typed by the
 * record its backend hands it.
 */

const nonEmpty = Type.String({ minLength: 1, errorMessage: 'must be a non-empty string' })
const names = Type.Array(nonEmpty, { minItems: 1, errorMessage: 'must be a non-empty array of non-empty strings' })
const integer = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  Type.Integer({ minimum: min, maximum: max, errorMessage: `must be an integer from ${min} to ${max}` })
const mapOf = <R>() => Type.Optional(opaque<SourceMap<R>>(Type.Function([], Type.Unknown())))
const instance = <T>() => opaque<T>(Type.Object({}))
/** Where a group starts when it is new: `latest` reads only what is produced from now on. */
const From = withDefault(Type.Union([Type.Literal('latest'), Type.Literal('earliest')], { errorMessage: 'must be "latest" or "earliest"' }), 'latest')

const common = {
  /** Names the source in logs, stats and metrics. Default: its type, with `-2`, `-3` for a second and third of the same type. */
  name: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.:-]+$', errorMessage: 'must be 1 to 64 of A-Z a-z 0-9 _ . : -' }))
}

const KafkaSourceSchema = Type.Object({
  type: Type.Literal('kafka'),
  ...common,
  brokers: names,
  topics: names,
  /** The consumer group every hub instance joins: each record is read by one instance. */
  groupId: withDefault(nonEmpty, 'ws-hub-source'),
  clientId: withDefault(nonEmpty, 'fastify-ws-hub-source'),
  from: From,
  /** A consumer silent for this long loses its partitions to the others. */
  sessionTimeoutMs: withDefault(integer(6_000, 300_000), 30_000),
  /** How often the consumer tells the group it is alive; below sessionTimeoutMs (about a third of it). */
  heartbeatIntervalMs: withDefault(integer(100), 3_000),
  /** Bad records are produced to this topic (value as read, headers with the reason and coordinates). */
  deadLetter: Type.Optional(Type.Object({ topic: nonEmpty }, { additionalProperties: false })),
  ssl: Type.Optional(opaque<boolean | ConnectionOptions>(Type.Union([Type.Boolean(), Type.Object({})]))),
  sasl: Type.Optional(opaque<SASLOptions>(Type.Object({ mechanism: Type.String() }))),
  map: mapOf<KafkaSourceRecord>()
}, { additionalProperties: false })

const MqttSourceSchema = Type.Object({
  type: Type.Literal('mqtt'),
  ...common,
  /** `mqtt://`, `mqtts://`, `ws://` or `wss://`. The broker must speak MQTT 5. */
  url: nonEmpty,
  /** Topic filters (`+` and `#` allowed). Subscribed as MQTT 5 shared subscriptions `$share/<group>/<filter>`. */
  subscriptions: names,
  /** The shared subscription group every hub instance joins: each message goes to one of them. */
  group: withDefault(Type.String({ minLength: 1, pattern: '^[^/+#]+$', errorMessage: 'must be non-empty, without / + #' }), 'ws-hub'),
  /**
   * The most the broker delivers at. At 2 the hub holds back PUBREC until
   * it took the message, so a refused message is still the broker's.
   */
  qos: withDefault(Type.Union([Type.Literal(1), Type.Literal(2)], { errorMessage: 'must be 1 or 2' }), 1),
  /**
   * Default: `ws-hub-<group>-<instanceId>`; with `ordered`,
   * `ws-hub-<group>-<name>`, one id for the group, so the session (what was
   * not acknowledged, what was queued meanwhile) moves with the lease.
   */
  clientId: Type.Optional(nonEmpty),
  username: Type.Optional(Type.String()),
  password: Type.Optional(Type.String()),
  /**
   * Keep the session this long (seconds) across a reconnect, so the broker
   * keeps unacknowledged messages for it. 0: a clean session. A session
   * outlives the process only under the same client id: set `clientId` or
   * the hub's `instanceId` to one that survives a restart.
   */
  sessionExpirySec: withDefault(integer(0, 4_294_967_295), 0),
  /** The wait between attempts to reconnect after the connection dropped (MQTT.js retries at this fixed interval). */
  reconnectMs: withDefault(integer(100, 600_000), 1_000),
  /** One instance at a time reads (a lease on the registry) without a shared subscription, so order is kept. */
  ordered: withDefault(Type.Boolean(), false),
  /**
   * Bad packets are published (QoS 1) to this MQTT topic, with the reason in
   * user properties. It needs a subscriber (or a persistent session
   * subscribed to it): a dead letter nobody takes is refused and the source
   * waits, as a bad record is kept rather than dropped.
   */
  deadLetter: Type.Optional(Type.Object({
    topic: Type.String({ minLength: 1, pattern: '^[^+#]+$', errorMessage: 'must be a topic name, without + #' })
  }, { additionalProperties: false })),
  map: mapOf<MqttSourceRecord>()
}, { additionalProperties: false })

const RedisStreamSourceSchema = Type.Object({
  type: Type.Literal('redis-stream'),
  ...common,
  url: Type.Optional(nonEmpty),
  client: Type.Optional(instance<Redis>()),
  streams: names,
  group: withDefault(nonEmpty, 'ws-hub'),
  from: From,
  /** Entries read per request, per stream. */
  count: withDefault(integer(1, 10_000), 100),
  /** Longest one blocking read waits on an idle stream (it holds a connection of its own meanwhile). */
  blockMs: withDefault(integer(1, 60_000), 1_000),
  /**
   * Entries another consumer read and has not acknowledged for this long are
   * claimed (its instance is taken as dead). Group consumers with nothing
   * pending and idle ten times this long are deleted, so the ids of dead
   * instances do not pile up.
   */
  claimIdleMs: withDefault(integer(100), 30_000),
  /** One instance at a time reads (a lease in the same Redis), so order is kept. */
  ordered: withDefault(Type.Boolean(), false),
  /**
   * How long an `ordered` source's lease lasts unless renewed (every third of
   * it): at most this long after its holder dies another instance reads on.
   */
  leaseMs: withDefault(integer(100, 600_000), 10_000),
  /**
   * Bad entries are added to this stream: their own fields, then
   * `ws-hub-reason`, `ws-hub-source-stream` and `ws-hub-source-id`. Trimmed
   * to about the last 100 000 entries (`MAXLEN ~`), so it stays bounded.
   */
  deadLetter: Type.Optional(Type.Object({ stream: nonEmpty }, { additionalProperties: false })),
  map: mapOf<StreamEntry>()
}, { additionalProperties: false })

const PostgresOutboxSourceSchema = Type.Object({
  type: Type.Literal('postgres-outbox'),
  ...common,
  /** Where the outbox is: `postgres://user@host:5432/db`. The source opens a small pool of its own (up to 4 connections). */
  connectionString: nonEmpty,
  /** The outbox table, as `outboxDdl(table)` creates it; names are used as written (quoted). */
  table: withDefault(Type.String({ pattern: TABLE_PATTERN, errorMessage: 'must be a table name (letters, digits, _; up to 55 characters), optionally schema-qualified' }), 'ws_outbox'),
  /** The `LISTEN` channel the table's trigger notifies. Default: the table name without its schema. */
  channel: Type.Optional(Type.String({ pattern: IDENTIFIER_PATTERN, errorMessage: 'must be an identifier (letters, digits, _; up to 63 characters)' })),
  /** Rows claimed per transaction. */
  batchSize: withDefault(integer(1, 10_000), 100),
  /** A poll even without a notification, for one that was missed (the listening connection was down). */
  pollIntervalMs: withDefault(integer(10), 1_000),
  /** `delete` removes a delivered row; `mark` sets its `delivered_at` (and leaves clearing old rows to you). */
  onDelivered: withDefault(Type.Union([Type.Literal('delete'), Type.Literal('mark')], { errorMessage: 'must be "delete" or "mark"' }), 'delete'),
  /**
   * One instance at a time reads (a session-level PostgreSQL advisory lock;
   * the others try every second), so rows go out in id order, except rows
   * committed out of id order.
   */
  ordered: withDefault(Type.Boolean(), false),
  /**
   * Bad rows stay in the table with the reason in this column, and are not
   * read again (whatever `onDelivered` says). Left out, bad rows are skipped:
   * deleted or marked like delivered ones. Rows with a value in this column
   * (`failed_reason` when left out) are never read.
   */
  deadLetter: Type.Optional(Type.Object({ column: Type.String({ pattern: IDENTIFIER_PATTERN, errorMessage: 'must be a column name' }) }, { additionalProperties: false })),
  map: mapOf<OutboxRow>()
}, { additionalProperties: false })

/**
 * A consumer of your own (NATS JetStream, RabbitMQ, a webhook queue): it
 * reads and acknowledges, the hub maps, checks and publishes. It is yours:
 * the hub starts and closes it with the others. `fastify-ws-hub/testing`'s
 * `sourceSuite` checks it keeps the contract.
 */
const CustomSourceSchema = Type.Object({
  type: Type.Literal('custom'),
  ...common,
  consumer: instance<SourceConsumer>(),
  map: mapOf<unknown>()
}, { additionalProperties: false })

export const SourceSchema = Type.Union([KafkaSourceSchema, MqttSourceSchema, RedisStreamSourceSchema, PostgresOutboxSourceSchema, CustomSourceSchema])

/** One entry of `sources`, as users write it. */
export type SourceOption = Static<typeof SourceSchema>
export type KafkaSourceOptions = Static<typeof KafkaSourceSchema>
export type MqttSourceOptions = Static<typeof MqttSourceSchema>
export type RedisStreamSourceOptions = Static<typeof RedisStreamSourceSchema>
export type PostgresOutboxSourceOptions = Static<typeof PostgresOutboxSourceSchema>
export type CustomSourceOptions = Static<typeof CustomSourceSchema>

export type KafkaSourceConfig = Filled<typeof KafkaSourceSchema>
export type MqttSourceConfig = Filled<typeof MqttSourceSchema>
export type RedisStreamSourceConfig = Filled<typeof RedisStreamSourceSchema>
export type PostgresOutboxSourceConfig = Filled<typeof PostgresOutboxSourceSchema>
export type CustomSourceConfig = Filled<typeof CustomSourceSchema>
export type SourceConfig = (KafkaSourceConfig | MqttSourceConfig | RedisStreamSourceConfig | PostgresOutboxSourceConfig | CustomSourceConfig) & { name: string }

const schemas = {
  kafka: new OptionSchema(KafkaSourceSchema),
  mqtt: new OptionSchema(MqttSourceSchema),
  'redis-stream': new OptionSchema(RedisStreamSourceSchema),
  'postgres-outbox': new OptionSchema(PostgresOutboxSourceSchema),
  custom: new OptionSchema(CustomSourceSchema)
}

/** Defaults of each source type's optional fields, for the README and tests. */
export const SOURCE_DEFAULTS = Object.freeze({
  kafka: schemas.kafka.defaults(),
  mqtt: schemas.mqtt.defaults(),
  redisStream: schemas['redis-stream'].defaults(),
  postgresOutbox: schemas['postgres-outbox'].defaults()
})

function normalizeOne (value: unknown, at: string): Omit<SourceConfig, 'name'> & { name?: string | undefined } {
  switch (typeOf(value, at, schemas)) {
    case 'kafka': {
      const config = schemas.kafka.normalize(value, at)
      // kafkajs refuses such a consumer; said here, it names the option.
      if (config.heartbeatIntervalMs >= config.sessionTimeoutMs) throw new OptionsError(`fastify-ws-hub: option "${at}.heartbeatIntervalMs" must be below sessionTimeoutMs (about a third of it)`)
      return config
    }
    case 'mqtt': return schemas.mqtt.normalize(value, at)
    case 'redis-stream': {
      const config = schemas['redis-stream'].normalize(value, at)
      if ((config.url === undefined) === (config.client === undefined)) throw new OptionsError(`fastify-ws-hub: option "${at}" needs exactly one of url and client`)
      return config
    }
    case 'postgres-outbox': return schemas['postgres-outbox'].normalize(value, at)
    case 'custom': return schemas.custom.normalize(value, at)
  }
}

/** Validates `sources` and names each one; names are unique. */
export function normalizeSources (value: unknown): SourceConfig[] {
  if (value === undefined) return []
  if (!Array.isArray(value)) throw new OptionsError('fastify-ws-hub: option "sources" must be an array of sources')
  const seen = new Map<string, number>()
  const configs = value.map((item: unknown, i) => normalizeOne(item, `sources[${i}]`))
  const out: SourceConfig[] = []
  for (const [i, config] of configs.entries()) {
    let name = config.name
    if (name === undefined) {
      const n = (seen.get(config.type) ?? 0) + 1
      seen.set(config.type, n)
      name = n === 1 ? config.type : `${config.type}-${n}`
    }
    if (out.some((other) => other.name === name)) throw new OptionsError(`fastify-ws-hub: option "sources[${i}].name": two sources are named ${JSON.stringify(name)}; give each a name of its own`)
    out.push({ ...config, name } as SourceConfig)
  }
  return out
}

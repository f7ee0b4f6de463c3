import Type, { type Static } from 'typebox'
import type { ConnectionOptions } from 'node:tls'
import type { ClusterOptions, Redis } from 'ioredis'
import type { SASLOptions } from 'kafkajs'
import type { Transport } from '../cluster/transport.js'
import type { MemoryBus } from '../cluster/memory/memory-transport.js'
import type { Limiter } from '../cluster/limiter.js'
import type { Directory } from '../cluster/directory.js'
import type { Presence } from '../cluster/presence.js'
import type { History } from '../cluster/history.js'
import { OptionsError } from '../errors.js'
import { describe, isRecord, opaque, OptionSchema, withDefault, type Filled } from './normalize.js'

/** Below this a lease would need renewing faster than a loaded event loop can promise. */
export const MIN_LEASE_MS = 100

const instance = <T>() => opaque<T>(Type.Object({}))
const nonEmpty = Type.String({ minLength: 1, errorMessage: 'must be a non-empty string' })
const integer = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  Type.Integer({ minimum: min, maximum: max, errorMessage: `must be an integer from ${min} to ${max}` })

const MemoryBrokerSchema = Type.Object({
  type: Type.Literal('memory'),
  /** Share one bus between hubs in the same process and they act as one cluster. */
  bus: Type.Optional(instance<MemoryBus>())
}, { additionalProperties: false })

const ClusterNodeSchema = Type.Union([
  Type.String({ pattern: '^.+:[0-9]+$' }),
  Type.Object({ host: nonEmpty, port: integer(1, 65_535) }, { additionalProperties: false })
], { errorMessage: 'must be "host:port" or { host, port }' })

/**
 * A Redis Cluster (Redis 7 or later, for sharded pub/sub). `nodes` are
 * startup nodes, any reachable subset of the cluster. `options` are ioredis
 * ClusterOptions, passed through (TLS, passwords, natMap, ...); the settings
 * that keep a command from running late or twice are the hub's and win.
 */
const RedisClusterSchema = Type.Object({
  nodes: Type.Array(ClusterNodeSchema, { minItems: 1, errorMessage: 'must be a non-empty array of "host:port" strings or { host, port }' }),
  options: Type.Optional(opaque<ClusterOptions>(Type.Object({})))
}, { additionalProperties: false })

/**
 * Redis pub/sub transport. Pass exactly one of `url` (the hub opens and
 * closes its connections), `client` (yours: duplicated for subscribing,
 * never closed) and `cluster` (a Redis Cluster: sharded pub/sub, each
 * topic's envelopes on the shard that serves its channel).
 */
const RedisBrokerSchema = Type.Object({
  type: Type.Literal('redis'),
  url: Type.Optional(nonEmpty),
  client: Type.Optional(instance<Redis>()),
  cluster: Type.Optional(RedisClusterSchema),
  /** Prefix of every channel name, so several hubs can share one Redis. On a cluster it may not contain `{` or `}`. */
  channelPrefix: withDefault(Type.String(), 'ws-hub:')
}, { additionalProperties: false })

/**
 * Kafka transport: every instance reads every message through its own
 * consumer group `<groupPrefix>-<instanceId>`, starting at the end of the
 * topic (no history is replayed). A cleanly closed instance deletes its
 * group; a crashed one leaves it behind until the cluster's
 * `offsets.retention.minutes` (7 days by default) expires it.
 */
const KafkaBrokerSchema = Type.Object({
  type: Type.Literal('kafka'),
  /** Bootstrap brokers as `host:port`. */
  brokers: Type.Array(Type.String({ minLength: 1 }), { minItems: 1, errorMessage: 'must be a non-empty array of "host:port" strings' }),
  topic: withDefault(nonEmpty, 'ws-hub-events'),
  /** kafkajs client id. */
  clientId: withDefault(nonEmpty, 'fastify-ws-hub'),
  /** Consumer groups are named `<groupPrefix>-<instanceId>`. */
  groupPrefix: withDefault(nonEmpty, 'ws-hub'),
  /**
   * Partitions of the topic if the hub has to create it. 1 keeps one global
   * order; with more, order holds per origin instance (messages are keyed by
   * origin). Ignored when the topic exists.
   */
  partitions: withDefault(integer(1), 1),
  /** Replication factor of a topic the hub creates; -1 is the cluster's `default.replication.factor`. */
  replicationFactor: withDefault(Type.Union([Type.Literal(-1), Type.Integer({ minimum: 1, maximum: 32_767 })], {
    errorMessage: 'must be -1 (cluster default) or at least 1'
  }), -1),
  /**
   * Producer acks. 1: the partition leader's ack, the lowest latency. -1
   * waits for every in-sync replica, so an acknowledged envelope survives a
   * leader failover; with replication factor 1 the two are the same.
   */
  acks: withDefault(Type.Union([Type.Literal(1), Type.Literal(-1)], { errorMessage: 'must be 1 or -1' }), 1),
  /**
   * A publish Kafka has not acknowledged within this many ms is given up:
   * dropped if still queued; one already sent cannot be taken back, so it
   * rejects once it is also older than the hub's `maxEnvelopeAgeMs`.
   */
  publishTimeoutMs: withDefault(integer(1), 3_000),
  /**
   * Publishes waiting for Kafka at once; beyond this, publish rejects at once
   * instead of queueing while Kafka is slow or down. The default is a second
   * of a 10k msg/s stream, enough to ride out a slow request or a GC pause.
   */
  maxPendingPublishes: withDefault(integer(1), 10_000),
  /** How long `start` (topic check, group join) may take before it fails. */
  startTimeoutMs: withDefault(integer(1), 30_000),
  /**
   * Longest a consumer fetch waits on an idle topic. The broker answers as
   * soon as a message arrives, so this bounds idle polling (one request per
   * instance per interval), not delivery latency.
   */
  maxWaitTimeInMs: withDefault(integer(1, 1_000), 50),
  /** TLS for the broker connections, passed to kafkajs. Plaintext when left out. */
  ssl: Type.Optional(opaque<boolean | ConnectionOptions>(Type.Union([Type.Boolean(), Type.Object({})]))),
  /** SASL authentication, passed to kafkajs. */
  sasl: Type.Optional(opaque<SASLOptions>(Type.Object({ mechanism: Type.String() })))
}, { additionalProperties: false })

/** A transport of your own. It is yours: the hub starts it but never closes it. */
const CustomBrokerSchema = Type.Object({
  type: Type.Literal('custom'),
  transport: instance<Transport>()
}, { additionalProperties: false })

const MemoryRegistrySchema = Type.Object({ type: Type.Literal('memory') }, { additionalProperties: false })

/**
 * Cluster state in Redis. Pass exactly one of `url` (the hub opens and
 * closes its connection), `client` (yours: duplicated, never closed) and
 * `cluster` (a Redis Cluster: every registry key in one slot, the prefix
 * being its hash tag, see `lib/cluster/redis/keys.ts`).
 */
const RedisRegistrySchema = Type.Object({
  type: Type.Literal('redis'),
  url: Type.Optional(nonEmpty),
  client: Type.Optional(instance<Redis>()),
  cluster: Type.Optional(RedisClusterSchema),
  /** Prefix of every key. On a cluster it must be non-empty and without `{` or `}`: the hub wraps it in braces. */
  keyPrefix: withDefault(Type.String(), 'ws-hub:'),
  /**
   * How long a crashed instance's slots stay taken. Below 100 ms a lease
   * would need refreshing faster than a loaded event loop can promise.
   */
  leaseMs: withDefault(Type.Integer({ minimum: MIN_LEASE_MS, errorMessage: `must be an integer of at least ${MIN_LEASE_MS}` }), 15_000)
}, { additionalProperties: false })

/** Cluster state of your own. Yours: the hub never closes it. */
const CustomRegistrySchema = Type.Object({
  type: Type.Literal('custom'),
  limiter: instance<Limiter>(),
  directory: instance<Directory>(),
  /** Left out: presence is kept per instance (each lists and counts only its own members). */
  presence: Type.Optional(instance<Presence>())
}, { additionalProperties: false })

const MemoryHistorySchema = Type.Object({ type: Type.Literal('memory') }, { additionalProperties: false })

/**
 * Redis Streams, one per topic. Pass exactly one of `url` (the hub opens
 * and closes its connection), `client` (yours: duplicated, never closed)
 * and `cluster` (a Redis Cluster: each topic's keys in the topic's slot).
 */
const RedisHistorySchema = Type.Object({
  type: Type.Literal('redis'),
  url: Type.Optional(nonEmpty),
  client: Type.Optional(instance<Redis>()),
  cluster: Type.Optional(RedisClusterSchema),
  /** Prefix of every key; history keys are `<keyPrefix>history:...`. On a cluster it may not contain `{` or `}`. */
  keyPrefix: withDefault(Type.String(), 'ws-hub:')
}, { additionalProperties: false })

/** A history store of your own. Yours: the hub never closes it. */
const CustomHistorySchema = Type.Object({
  type: Type.Literal('custom'),
  history: instance<History>()
}, { additionalProperties: false })

export const BrokerSchema = Type.Union([MemoryBrokerSchema, RedisBrokerSchema, KafkaBrokerSchema, CustomBrokerSchema])
export const RegistrySchema = Type.Union([MemoryRegistrySchema, RedisRegistrySchema, CustomRegistrySchema])
export const HistoryStoreSchema = Type.Union([MemoryHistorySchema, RedisHistorySchema, CustomHistorySchema])

export type RedisBrokerOptions = Static<typeof RedisBrokerSchema>
export type KafkaBrokerOptions = Static<typeof KafkaBrokerSchema>
export type RedisRegistryOptions = Static<typeof RedisRegistrySchema>

export type BrokerOption = Static<typeof BrokerSchema>
/** @deprecated `broker` was renamed `transport`; the old key goes in the next release. */
export interface DeprecatedCustomBroker { type: 'custom', broker: Transport }
export type RegistryOption = Static<typeof RegistrySchema>
export type HistoryOption = Static<typeof HistoryStoreSchema>

/** Backend options after normalization: every default is filled in. */
export type BrokerConfig = Filled<typeof BrokerSchema>
export type RegistryConfig = Filled<typeof RegistrySchema>
export type KafkaConfig = Filled<typeof KafkaBrokerSchema>
export type RedisBrokerConfig = Filled<typeof RedisBrokerSchema>
export type RedisRegistryConfig = Filled<typeof RedisRegistrySchema>
export type HistoryConfig = Filled<typeof HistoryStoreSchema>
export type RedisHistoryConfig = Filled<typeof RedisHistorySchema>

const broker = {
  memory: new OptionSchema(MemoryBrokerSchema),
  redis: new OptionSchema(RedisBrokerSchema),
  kafka: new OptionSchema(KafkaBrokerSchema),
  custom: new OptionSchema(CustomBrokerSchema, [{ from: 'broker', to: 'transport' }])
}

const registry = {
  memory: new OptionSchema(MemoryRegistrySchema),
  redis: new OptionSchema(RedisRegistrySchema),
  custom: new OptionSchema(CustomRegistrySchema)
}

const history = {
  memory: new OptionSchema(MemoryHistorySchema),
  redis: new OptionSchema(RedisHistorySchema),
  custom: new OptionSchema(CustomHistorySchema)
}

export const KafkaOptions = broker.kafka

/** Defaults of each backend's optional fields, for the README and tests. */
export const BACKEND_DEFAULTS = Object.freeze({
  redisBroker: broker.redis.defaults(),
  kafkaBroker: broker.kafka.defaults(),
  redisRegistry: registry.redis.defaults(),
  redisHistory: history.redis.defaults()
})

/**
 * The backend's `type` picks the one schema to check against, so an error
 * names the field that is wrong in that backend instead of listing why the
 * options match none of the four.
 */
export function typeOf<K extends string> (value: unknown, name: string, types: Record<K, unknown>): K {
  if (!isRecord(value)) throw new OptionsError(`fastify-ws-hub: option "${name}" must be an object with a "type" (got ${describe(value)})`)
  const type = value.type
  if (typeof type === 'string' && isKeyOf(types, type)) return type
  throw new OptionsError(`fastify-ws-hub: option "${name}.type" must be one of ${Object.keys(types).join(', ')} (got ${describe(type)})`)
}

function isKeyOf<K extends string> (record: Record<K, unknown>, key: string): key is K {
  return Object.hasOwn(record, key)
}

export function normalizeBroker (value: unknown): BrokerConfig {
  switch (typeOf(value, 'broker', broker)) {
    case 'memory': return broker.memory.normalize(value, 'broker')
    case 'redis': return broker.redis.normalize(value, 'broker')
    case 'kafka': return broker.kafka.normalize(value, 'broker')
    case 'custom': return broker.custom.normalize(value, 'broker')
  }
}

export function normalizeRegistry (value: unknown): RegistryConfig {
  switch (typeOf(value, 'registry', registry)) {
    case 'memory': return registry.memory.normalize(value, 'registry')
    case 'redis': return registry.redis.normalize(value, 'registry')
    case 'custom': return registry.custom.normalize(value, 'registry')
  }
}

export function normalizeHistory (value: unknown): HistoryConfig {
  switch (typeOf(value, 'history', history)) {
    case 'memory': return history.memory.normalize(value, 'history')
    case 'redis': return history.redis.normalize(value, 'history')
    case 'custom': return history.custom.normalize(value, 'history')
  }
}

/**
 * The history store when the `history` option is left out: the registry's
 * Redis (same server and key prefix) when the registry is Redis, so history
 * is shared by the same instances that share the registry; memory otherwise.
 */
export function defaultHistory (registry: RegistryConfig): HistoryConfig {
  if (registry.type !== 'redis') return { type: 'memory' }
  // The registry's own fields but its lease: the same url, client or cluster, and keyPrefix.
  const { leaseMs: _lease, ...source } = registry
  return source
}

import { Type, type Static } from 'typebox'
import { Compile } from 'typebox/compile'
import type { FastifyRequest } from 'fastify'
import type { Redis } from 'ioredis'
import type { Registry as PromRegistry } from 'prom-client'
import type { HubService } from '../protocol/service.js'
import type { Broker } from '../cluster/transport.js'
import type { MemoryBus } from '../cluster/memory/memory-transport.js'
import type { Registry } from '../cluster/registry.js'

// Every default lives here, named, so the README and the code cannot disagree.
export const DEFAULTS = Object.freeze({
  path: '/ws',
  maxConnections: 10_000,
  maxConnectionsPerIp: 50,
  heartbeatInterval: 25_000,
  maxBufferedBytes: 1024 * 1024,
  maxPayload: 64 * 1024,
  closeTimeout: 3_000,
  retryAfter: 5,
  announce: false,
  echo: false,
  restPrefix: '/api',
  instanceId: undefined,
  protocols: ['ws-hub.v1', 'ws-hub.v1.batch'],
  batch: { maxDelayMs: 25, maxMessages: 100 },
  conflateMs: 100,
  preparedFrames: true,
  maxConnectionsPerUser: 10,
  revalidateInterval: 60_000,
  allowMissingOrigin: false,
  messageRateLimit: { max: 200, intervalMs: 1_000 },
  handshakeRateLimit: { max: 120, intervalMs: 60_000 },
  maxJsonDepth: 32,
  maxTopicsPerConnection: 100,
  ipv6Prefix: 64,
  metricsPath: '/metrics',
  metricsPrefix: 'ws_hub_'
})

export type RestAuth = (request: FastifyRequest) => boolean | Promise<boolean>

/** Who a connection belongs to. Extra claims are kept for your hooks. */
export interface Identity {
  userId: string
  [claim: string]: unknown
}

/**
 * Runs before the upgrade. Return an identity to accept, `null` to refuse
 * with 401. A throw also refuses with 401 (and is logged).
 */
export type Authenticate = (request: FastifyRequest) => Promise<Identity | null> | Identity | null

/** Re-checks a live session; false (or a throw) closes the socket with 1008. */
export type Revalidate = (identity: Identity, clientId: string) => Promise<boolean> | boolean

export const REST_ROUTE_NAMES = [
  'listConnections', 'getConnection', 'closeConnection', 'broadcast', 'sendToConnection',
  'publish', 'sendToUser', 'closeUser', 'stats'
] as const
export type RestRouteName = typeof REST_ROUTE_NAMES[number]

export interface RateLimit {
  max: number
  intervalMs: number
}

const Int = (min: number) => Type.Integer({ minimum: min })

const RestOptionsSchema = Type.Object({
  prefix: Type.Optional(Type.String({ pattern: '^/' })),
  auth: Type.Optional(Type.Function([], Type.Unknown())),
  disable: Type.Optional(Type.Array(Type.Union(REST_ROUTE_NAMES.map((name) => Type.Literal(name)))))
}, { additionalProperties: false })

const RateLimitSchema = Type.Union([
  Type.Literal(false),
  Type.Object({ max: Int(1), intervalMs: Int(1) }, { additionalProperties: false })
])

// The broker and registry are validated by their own factories: their shapes
// depend on the backend chosen, and a union error message would be unreadable.
export const OptionsSchema = Type.Object({
  path: Type.Optional(Type.String({ pattern: '^/' })),
  maxConnections: Type.Optional(Int(1)),
  maxConnectionsPerIp: Type.Optional(Int(1)),
  heartbeatInterval: Type.Optional(Int(0)),
  maxBufferedBytes: Type.Optional(Int(1)),
  maxPayload: Type.Optional(Int(1)),
  closeTimeout: Type.Optional(Int(0)),
  retryAfter: Type.Optional(Int(0)),
  announce: Type.Optional(Type.Boolean()),
  echo: Type.Optional(Type.Boolean()),
  instanceId: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
  service: Type.Optional(Type.Object({
    onConnect: Type.Optional(Type.Function([], Type.Unknown())),
    onMessage: Type.Optional(Type.Function([], Type.Unknown())),
    onDisconnect: Type.Optional(Type.Function([], Type.Unknown()))
  })),
  rest: Type.Optional(Type.Union([Type.Literal(false), RestOptionsSchema])),
  authenticate: Type.Optional(Type.Function([], Type.Unknown())),
  protocols: Type.Optional(Type.Array(Type.String({ minLength: 1, pattern: '^[!#$%&\'*+.^_`|~0-9A-Za-z-]+$' }), { minItems: 1 })),
  maxConnectionsPerUser: Type.Optional(Int(1)),
  revalidate: Type.Optional(Type.Function([], Type.Unknown())),
  revalidateInterval: Type.Optional(Int(1)),
  allowedOrigins: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
  allowMissingOrigin: Type.Optional(Type.Boolean()),
  messageRateLimit: Type.Optional(RateLimitSchema),
  handshakeRateLimit: Type.Optional(RateLimitSchema),
  maxJsonDepth: Type.Optional(Int(1)),
  maxTopicsPerConnection: Type.Optional(Int(1)),
  ipv6Prefix: Type.Optional(Type.Integer({ minimum: 1, maximum: 128 })),
  batch: Type.Optional(Type.Union([Type.Literal(false), Type.Object({
    maxDelayMs: Int(1),
    maxMessages: Int(1)
  }, { additionalProperties: false })])),
  conflateMs: Type.Optional(Int(1)),
  preparedFrames: Type.Optional(Type.Boolean()),
  metrics: Type.Optional(Type.Union([Type.Literal(false), Type.Object({
    path: Type.Optional(Type.String({ pattern: '^/' })),
    prefix: Type.Optional(Type.String({ pattern: '^[a-zA-Z_:][a-zA-Z0-9_:]*$' })),
    registry: Type.Optional(Type.Object({}))
  }, { additionalProperties: false })])),
  broker: Type.Optional(Type.Object({ type: Type.String() })),
  registry: Type.Optional(Type.Object({ type: Type.String() }))
}, { additionalProperties: false })

type CheckedOptions = Static<typeof OptionsSchema>

/** What users pass to `fastify.register(wsHub, options)`. */
export interface WsHubOptions extends Omit<CheckedOptions, 'service' | 'rest' | 'broker' | 'registry' | 'authenticate' | 'revalidate' | 'messageRateLimit' | 'handshakeRateLimit' | 'metrics'> {
  /** Prometheus metrics; `registry` is yours (a prom-client Registry) and is never cleared. */
  metrics?: false | { path?: string, prefix?: string, registry?: PromRegistry }
  service?: HubService
  rest?: false | { prefix?: string, auth?: RestAuth, disable?: RestRouteName[] }
  authenticate?: Authenticate
  revalidate?: Revalidate
  messageRateLimit?: RateLimit | false
  handshakeRateLimit?: RateLimit | false
  broker?: BrokerOption
  registry?: RegistryOption
}

/** Redis pub/sub transport. Pass `url` (the hub opens and closes its connections) or `client` (yours: duplicated for subscribing, never closed). */
export interface RedisBrokerOptions {
  type: 'redis'
  url?: string
  client?: Redis
  /** Prefix of every channel name, so several hubs can share one Redis. Default `ws-hub:`. */
  channelPrefix?: string
}

/**
 * Kafka transport: every instance reads every message through its own
 * consumer group `<groupPrefix>-<instanceId>`, starting at the end of the
 * topic (no history is replayed). A cleanly closed instance deletes its
 * group; a crashed one leaves it behind until the cluster's
 * `offsets.retention.minutes` (7 days by default) expires it.
 */
export interface KafkaBrokerOptions {
  type: 'kafka'
  /** Bootstrap brokers as `host:port`. Required, at least one. */
  brokers: string[]
  /** Default `ws-hub-events`. */
  topic?: string
  /** kafkajs client id. Default `fastify-ws-hub`. */
  clientId?: string
  /** Consumer groups are named `<groupPrefix>-<instanceId>`. Default `ws-hub`. */
  groupPrefix?: string
  /**
   * Partitions of the topic if the hub has to create it. Default 1, which
   * keeps one global order; with more, order holds per origin instance
   * (messages are keyed by origin). Ignored when the topic exists.
   */
  partitions?: number
  /**
   * Replication factor of the topic if the hub has to create it. Default -1:
   * the cluster's `default.replication.factor`. Ignored when the topic exists.
   */
  replicationFactor?: number
  /**
   * Producer acks. Default 1: the partition leader's ack, the lowest latency.
   * -1 waits for every in-sync replica, so an acknowledged envelope survives a
   * leader failover; with replication factor 1 the two are the same.
   */
  acks?: 1 | -1
  /** A publish Kafka has not acknowledged within this many ms rejects. Default 3000. */
  publishTimeoutMs?: number
  /**
   * Publishes waiting for Kafka at once. Beyond this, publish rejects at once
   * instead of queueing while Kafka is slow or down. Default 10000: a second
   * of a 10k msg/s stream, enough to ride out a slow request or a GC pause.
   */
  maxPendingPublishes?: number
  /** How long `start` (topic check, group join) may take before it fails. Default 30000. */
  startTimeoutMs?: number
  /**
   * Longest a consumer fetch waits on an idle topic, in ms. Default 50. The
   * broker answers as soon as a message arrives, so this bounds idle polling
   * (one request per instance per interval), not delivery latency.
   */
  maxWaitTimeInMs?: number
  /** TLS for the broker connections, passed to kafkajs. Default off (plaintext). */
  ssl?: boolean | import('node:tls').ConnectionOptions
  /** SASL authentication, passed to kafkajs. Default none. */
  sasl?: import('kafkajs').SASLOptions
}

export interface RedisRegistryOptions {
  type: 'redis'
  url?: string
  client?: Redis
  /** Prefix of every key. Default `ws-hub:`. */
  keyPrefix?: string
  /** How long a crashed instance's slots stay taken, in ms. Default 15000. */
  leaseMs?: number
}

export type BrokerOption =
  | { type: 'memory', bus?: MemoryBus }
  | { type: 'custom', broker: Broker }
  | RedisBrokerOptions
  | KafkaBrokerOptions

export type RegistryOption =
  | { type: 'memory' }
  | { type: 'custom', registry: Registry }
  | RedisRegistryOptions

/** Options after validation and defaulting: every field is present. */
export interface NormalizedOptions {
  path: string
  maxConnections: number
  maxConnectionsPerIp: number
  heartbeatInterval: number
  maxBufferedBytes: number
  maxPayload: number
  closeTimeout: number
  retryAfter: number
  announce: boolean
  echo: boolean
  instanceId: string | undefined
  service: HubService
  rest: false | { prefix: string, auth: RestAuth | undefined, disable: ReadonlySet<RestRouteName> }
  authenticate: Authenticate | undefined
  protocols: string[]
  maxConnectionsPerUser: number
  revalidate: Revalidate | undefined
  revalidateInterval: number
  /** null: no origin check. */
  allowedOrigins: ReadonlySet<string> | null
  allowMissingOrigin: boolean
  messageRateLimit: RateLimit | false
  handshakeRateLimit: RateLimit | false
  maxJsonDepth: number
  maxTopicsPerConnection: number
  ipv6Prefix: number
  metrics: false | { path: string, prefix: string, registry: PromRegistry | undefined }
  batch: { maxDelayMs: number, maxMessages: number } | false
  conflateMs: number
  preparedFrames: boolean
  broker: BrokerOption
  registry: RegistryOption
}

const checker = Compile(OptionsSchema)

export class OptionsError extends Error {
  override name = 'OptionsError'
}

function describe (value: unknown): string {
  if (typeof value === 'function') return 'a function'
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}

function valueAt (root: unknown, pointer: string): unknown {
  let current: unknown = root
  for (const part of pointer.split('/').slice(1)) {
    if (current === null || typeof current !== 'object') return undefined
    current = (current as Record<string, unknown>)[part]
  }
  return current
}

/**
 * Validates once at register time and returns a fresh object: the caller's
 * options are never mutated.
 */
export function normalizeOptions (input: WsHubOptions | undefined): NormalizedOptions {
  const options: WsHubOptions = input ?? {}
  if (!checker.Check(options)) {
    const first = [...checker.Errors(options)][0]
    if (first === undefined) throw new OptionsError('fastify-ws-hub: invalid options')
    const name = first.instancePath === '' ? describeRequired(first.params) : first.instancePath.slice(1).replaceAll('/', '.')
    // An unknown key surfaces as "schema is false" on that key's path.
    const unknownKey = first.keyword === 'additionalProperties' || first.message === 'schema is false'
    if (unknownKey) throw new OptionsError(`fastify-ws-hub: option "${name}" is not a known option`)
    const got = first.instancePath === '' ? '' : ` (got ${describe(valueAt(options, first.instancePath))})`
    throw new OptionsError(`fastify-ws-hub: option "${name}" ${first.message}${got}`)
  }
  const rest = options.rest === false
    ? false as const
    : { prefix: options.rest?.prefix ?? DEFAULTS.restPrefix, auth: options.rest?.auth, disable: new Set(options.rest?.disable ?? []) }
  return {
    path: options.path ?? DEFAULTS.path,
    maxConnections: options.maxConnections ?? DEFAULTS.maxConnections,
    maxConnectionsPerIp: options.maxConnectionsPerIp ?? DEFAULTS.maxConnectionsPerIp,
    heartbeatInterval: options.heartbeatInterval ?? DEFAULTS.heartbeatInterval,
    maxBufferedBytes: options.maxBufferedBytes ?? DEFAULTS.maxBufferedBytes,
    maxPayload: options.maxPayload ?? DEFAULTS.maxPayload,
    closeTimeout: options.closeTimeout ?? DEFAULTS.closeTimeout,
    retryAfter: options.retryAfter ?? DEFAULTS.retryAfter,
    announce: options.announce ?? DEFAULTS.announce,
    echo: options.echo ?? DEFAULTS.echo,
    instanceId: options.instanceId ?? DEFAULTS.instanceId,
    service: options.service ?? {},
    rest,
    authenticate: options.authenticate,
    protocols: [...(options.protocols ?? DEFAULTS.protocols)],
    maxConnectionsPerUser: options.maxConnectionsPerUser ?? DEFAULTS.maxConnectionsPerUser,
    revalidate: options.revalidate,
    revalidateInterval: options.revalidateInterval ?? DEFAULTS.revalidateInterval,
    allowedOrigins: options.allowedOrigins === undefined ? null : new Set(options.allowedOrigins),
    allowMissingOrigin: options.allowMissingOrigin ?? DEFAULTS.allowMissingOrigin,
    messageRateLimit: copyLimit(options.messageRateLimit, DEFAULTS.messageRateLimit),
    handshakeRateLimit: copyLimit(options.handshakeRateLimit, DEFAULTS.handshakeRateLimit),
    maxJsonDepth: options.maxJsonDepth ?? DEFAULTS.maxJsonDepth,
    maxTopicsPerConnection: options.maxTopicsPerConnection ?? DEFAULTS.maxTopicsPerConnection,
    ipv6Prefix: options.ipv6Prefix ?? DEFAULTS.ipv6Prefix,
    batch: options.batch === false
      ? false
      : { maxDelayMs: options.batch?.maxDelayMs ?? DEFAULTS.batch.maxDelayMs, maxMessages: options.batch?.maxMessages ?? DEFAULTS.batch.maxMessages },
    conflateMs: options.conflateMs ?? DEFAULTS.conflateMs,
    preparedFrames: options.preparedFrames ?? DEFAULTS.preparedFrames,
    metrics: options.metrics === false
      ? false
      : { path: options.metrics?.path ?? DEFAULTS.metricsPath, prefix: options.metrics?.prefix ?? DEFAULTS.metricsPrefix, registry: options.metrics?.registry },
    broker: options.broker ?? { type: 'memory' },
    registry: options.registry ?? { type: 'memory' }
  }
}

function copyLimit (value: RateLimit | false | undefined, fallback: RateLimit): RateLimit | false {
  if (value === false) return false
  const chosen = value ?? fallback
  return { max: chosen.max, intervalMs: chosen.intervalMs }
}

function describeRequired (params: unknown): string {
  if (params !== null && typeof params === 'object') {
    const p = params as { requiredProperties?: unknown, additionalProperties?: unknown }
    if (Array.isArray(p.additionalProperties)) return String(p.additionalProperties[0])
    if (Array.isArray(p.requiredProperties)) return String(p.requiredProperties[0])
  }
  return 'options'
}

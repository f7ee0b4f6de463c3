import Type, { type Static } from 'typebox'
import type { Registry as PromRegistry } from 'prom-client'
import type { HubService } from '../protocol/service.js'
import type { WsRouteOptions } from './route-options.js'
import type { Authenticate, RestAuth, Revalidate } from './hooks.js'
import { OptionsError } from '../errors.js'
import { DEFAULT_MAX_ENVELOPE_AGE_MS } from '../cluster/envelope.js'
import {
  BrokerSchema, defaultHistory, HistoryStoreSchema, normalizeBroker, normalizeHistory, normalizeRegistry, RegistrySchema,
  type BrokerOption, type DeprecatedCustomBroker, type HistoryConfig
} from './backend-options.js'
import { isRecord, opaque, OptionSchema, withDefault, type Alias, type Filled } from './normalize.js'
import { normalizeTopics, PermissionOptions, type TopicsConfig } from './topic-options.js'
import { normalizeSources, SourceSchema, type SourceConfig } from './source-options.js'

export { OptionsError }
export type {
  BrokerOption, RegistryOption, BrokerConfig, RegistryConfig,
  RedisBrokerOptions, KafkaBrokerOptions, RedisRegistryOptions,
  HistoryOption, HistoryConfig
} from './backend-options.js'
export type {
  SourceOption, SourceConfig, KafkaSourceOptions, MqttSourceOptions, RedisStreamSourceOptions, PostgresOutboxSourceOptions, CustomSourceOptions
} from './source-options.js'

export type { RestAuth, Identity, Authenticate, Revalidate, Authorize, AuthorizeRequest } from './hooks.js'
export type { TopicsOption, TopicRulesOption, TopicRules, TopicsConfig } from './topic-options.js'

export const REST_ROUTE_NAMES = [
  'listConnections', 'getConnection', 'closeConnection', 'broadcast', 'sendToConnection',
  'publish', 'sendToUser', 'closeUser', 'stats',
  'subscribeConnection', 'unsubscribeConnection', 'subscribeUser', 'unsubscribeUser',
  'presence', 'presenceStats', 'history'
] as const
export type RestRouteName = typeof REST_ROUTE_NAMES[number]

const Int = (min: number) => Type.Integer({ minimum: min })
const Path = Type.String({ pattern: '^/' })
const Fn = Type.Function([], Type.Unknown())

const RateLimitSchema = Type.Object({ max: Int(1), intervalMs: Int(1) }, { additionalProperties: false })
export type RateLimit = Static<typeof RateLimitSchema>
const RateLimitOrOff = Type.Union([Type.Literal(false), RateLimitSchema])

const RestSchema = Type.Object({
  prefix: withDefault(Path, '/api'),
  /** `false` runs the push API open on purpose; left out, it runs open with a warning. */
  auth: Type.Optional(opaque<RestAuth | false>(Type.Union([Type.Literal(false), Fn]))),
  disable: withDefault(Type.Array(Type.Enum(REST_ROUTE_NAMES)), [])
}, { additionalProperties: false })

const BatchSchema = Type.Object({
  maxDelayMs: withDefault(Int(1), 25),
  maxMessages: withDefault(Int(1), 100)
}, { additionalProperties: false })

const MetricsSchema = Type.Object({
  path: withDefault(Path, '/metrics'),
  prefix: withDefault(Type.String({ pattern: '^[a-zA-Z_:][a-zA-Z0-9_:]*$' }), 'ws_hub_'),
  /** A prom-client Registry of yours; the hub registers its metrics there and never clears it. */
  registry: Type.Optional(opaque<PromRegistry>(Type.Object({})))
}, { additionalProperties: false })

// Service hooks are checked by JavaScript type only; HubService gives them
// their signatures. Other keys are allowed so a class instance can serve.
const ServiceSchema = opaque<HubService>(Type.Object({
  onConnect: Type.Optional(Fn),
  onMessage: Type.Optional(Fn),
  onDisconnect: Type.Optional(Fn)
}))

const Hooks = Type.Optional(Type.Union([Fn, Type.Array(Fn)]))

// Hook signatures come from WsRouteOptions; the schema checks the shape.
const RouteSchema = opaque<WsRouteOptions>(Type.Object({
  onRequest: Hooks,
  preValidation: Hooks,
  preHandler: Hooks,
  config: Type.Optional(Type.Object({}))
}, { additionalProperties: false }))

const HubSchema = Type.Object({
  path: withDefault(Path, '/ws'),
  maxConnections: withDefault(Int(1), 10_000),
  maxConnectionsPerIp: withDefault(Int(1), 50),
  /** 0 turns pings off. */
  heartbeatIntervalMs: withDefault(Int(0), 25_000),
  maxBufferedBytes: withDefault(Int(1), 1024 * 1024),
  maxPayload: withDefault(Int(1), 64 * 1024),
  closeTimeoutMs: withDefault(Int(0), 3_000),
  /** Sent to refused clients as a Retry-After header, rounded up to whole seconds. */
  retryAfterMs: withDefault(Int(0), 5_000),
  announce: withDefault(Type.Boolean(), false),
  echo: withDefault(Type.Boolean(), false),
  instanceId: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
  service: withDefault(ServiceSchema, {}),
  rest: withDefault(Type.Union([Type.Literal(false), RestSchema]), {}),
  authenticate: Type.Optional(opaque<Authenticate>(Fn)),
  /** Your hooks and config on the WebSocket route; they run after the hub's admission checks. */
  route: withDefault(RouteSchema, {}),
  /** How long a cross-instance lookup (a client on another instance) may wait for the answer. */
  queryTimeoutMs: withDefault(Int(1), 2_000),
  /**
   * An envelope from another instance older than this on arrival (by the
   * origin's send time; hosts must be NTP-synced) is dropped and counted, not
   * delivered late. A built-in transport reports a publish whose fate it does
   * not know as failed only once it is this old.
   */
  maxEnvelopeAgeMs: withDefault(Int(1), DEFAULT_MAX_ENVELOPE_AGE_MS),
  protocols: withDefault(Type.Array(Type.String({ minLength: 1, pattern: '^[!#$%&\'*+.^_`|~0-9A-Za-z-]+$' }), { minItems: 1 }), ['ws-hub.v1', 'ws-hub.v1.batch']),
  maxConnectionsPerUser: withDefault(Int(1), 10),
  revalidate: Type.Optional(opaque<Revalidate>(Fn)),
  revalidateIntervalMs: withDefault(Int(1), 60_000),
  /** Left out: no origin check. */
  allowedOrigins: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
  allowMissingOrigin: withDefault(Type.Boolean(), false),
  messageRateLimit: withDefault(RateLimitOrOff, { max: 200, intervalMs: 1_000 }),
  handshakeRateLimit: withDefault(RateLimitOrOff, { max: 120, intervalMs: 60_000 }),
  maxJsonDepth: withDefault(Int(1), 32),
  maxTopicsPerConnection: withDefault(Int(1), 100),
  /** IPv6 clients are counted per network of this prefix length, since one host often holds a whole /64. */
  ipv6Prefix: withDefault(Type.Integer({ minimum: 1, maximum: 128 }), 64),
  batch: withDefault(Type.Union([Type.Literal(false), BatchSchema]), {}),
  conflateMs: withDefault(Int(1), 100),
  preparedFrames: withDefault(Type.Boolean(), true),
  metrics: withDefault(Type.Union([Type.Literal(false), MetricsSchema]), {}),
  ...PermissionOptions,
  broker: withDefault(BrokerSchema, { type: 'memory' }),
  registry: withDefault(RegistrySchema, { type: 'memory' }),
  /**
   * Where the history of topics with a `history` rule, and idempotency
   * keys, are kept. Left out: the registry's Redis when the registry is
   * Redis, memory otherwise (see `defaultHistory`).
   */
  history: Type.Optional(HistoryStoreSchema),
  /** Publications one recovery may replay; a client further behind gets `recovered: false`. */
  maxRecovery: withDefault(Int(1), 300),
  /** How long a publish's `idempotencyKey` is remembered per topic. */
  idempotencyWindowMs: withDefault(Int(1), 300_000),
  /** Streams of other services (Kafka, MQTT, Redis Streams, a PostgreSQL outbox) whose records the hub publishes. */
  sources: withDefault(Type.Array(SourceSchema), [])
}, { additionalProperties: false })

// Time options end in Ms; the old names are accepted for one release.
const ALIASES = [
  { from: 'heartbeatInterval', to: 'heartbeatIntervalMs' },
  { from: 'closeTimeout', to: 'closeTimeoutMs' },
  { from: 'revalidateInterval', to: 'revalidateIntervalMs' },
  { from: 'retryAfter', to: 'retryAfterMs', scale: 1000 }
] as const satisfies readonly Alias[]

/**
 * Old names of time options. Deprecated: `retryAfter` was in seconds,
 * `retryAfterMs` is in ms; the others only gained the `Ms` suffix.
 */
export type DeprecatedOptions = { [A in typeof ALIASES[number] as A['from']]?: number }

/** What users pass to `fastify.register(wsHub, options)`. */
export type WsHubOptions = Omit<Static<typeof HubSchema>, 'broker'> & DeprecatedOptions & { broker?: BrokerOption | DeprecatedCustomBroker }

type Filled_ = Filled<typeof HubSchema>

/** Options after validation and defaulting: every field with a default is present. */
export interface NormalizedOptions extends Omit<Filled_, 'rest' | 'allowedOrigins' | 'topics' | 'history' | 'sources'> {
  /** Validated, each with its defaults and a unique name. */
  sources: SourceConfig[]
  /** Always present: the default is filled in from the registry. */
  history: HistoryConfig
  rest: false | (Omit<Filled<typeof RestSchema>, 'disable'> & { disable: ReadonlySet<RestRouteName> })
  /** null: no `topics` option, every topic open to everyone. */
  topics: TopicsConfig | null
  /** null: no origin check. */
  allowedOrigins: ReadonlySet<string> | null
}

const hub = new OptionSchema(HubSchema, ALIASES)

/** Every default, as normalization fills it in; frozen, for the README and tests. */
export const DEFAULTS = hub.defaults()

/**
 * Validates once at register time and returns a fresh object: the caller's
 * options are never mutated. Throws one OptionsError naming the option.
 */
export function normalizeOptions (input: WsHubOptions | undefined): NormalizedOptions {
  const given: unknown = input ?? {}
  if (!isRecord(given)) throw new OptionsError(`fastify-ws-hub: options must be an object (got ${typeof given})`)
  // Backends apart: their `type` picks the one schema to check against, and
  // a union's defaulting would copy a user's transport or directory.
  const { broker, registry, history, sources, ...others } = given
  const options = hub.normalize(others, '')
  const { rest, allowedOrigins } = options
  const registryConfig = registry === undefined ? options.registry : normalizeRegistry(registry)
  return {
    ...options,
    topics: normalizeTopics(options.topics),
    broker: broker === undefined ? options.broker : normalizeBroker(broker),
    registry: registryConfig,
    history: history === undefined ? defaultHistory(registryConfig) : normalizeHistory(history),
    sources: normalizeSources(sources),
    rest: rest === false ? false : { prefix: rest.prefix, auth: rest.auth, disable: new Set(rest.disable) },
    allowedOrigins: allowedOrigins === undefined ? null : new Set(allowedOrigins)
  }
}

import { Type, type Static } from 'typebox'
import { Compile } from 'typebox/compile'
import type { FastifyRequest } from 'fastify'
import type { Redis } from 'ioredis'
import type { HubService } from './service.js'
import type { Broker } from './brokers/broker.js'
import type { MemoryBus } from './brokers/memory-broker.js'
import type { Registry } from './registries/registry.js'

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
  instanceId: undefined
})

export type RestAuth = (request: FastifyRequest) => boolean | Promise<boolean>

const Int = (min: number) => Type.Integer({ minimum: min })

const RestOptionsSchema = Type.Object({
  prefix: Type.Optional(Type.String({ pattern: '^/' })),
  auth: Type.Optional(Type.Function([], Type.Unknown()))
}, { additionalProperties: false })

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
  broker: Type.Optional(Type.Object({ type: Type.String() })),
  registry: Type.Optional(Type.Object({ type: Type.String() }))
}, { additionalProperties: false })

type CheckedOptions = Static<typeof OptionsSchema>

/** What users pass to `fastify.register(wsHub, options)`. */
export interface WsHubOptions extends Omit<CheckedOptions, 'service' | 'rest' | 'broker' | 'registry'> {
  service?: HubService
  rest?: false | { prefix?: string, auth?: RestAuth }
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

/** Kafka transport: every instance reads every message (its own consumer group). */
export interface KafkaBrokerOptions {
  type: 'kafka'
  brokers: string[]
  /** Default `ws-hub-events`. */
  topic?: string
  /** kafkajs client id. Default `fastify-ws-hub`. */
  clientId?: string
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
  rest: false | { prefix: string, auth: RestAuth | undefined }
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
    const got = first.instancePath === '' ? '' : ` (got ${describe(valueAt(options, first.instancePath))})`
    throw new OptionsError(`fastify-ws-hub: option "${name}" ${first.message}${got}`)
  }
  const rest = options.rest === false
    ? false as const
    : { prefix: options.rest?.prefix ?? DEFAULTS.restPrefix, auth: options.rest?.auth }
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
    broker: options.broker ?? { type: 'memory' },
    registry: options.registry ?? { type: 'memory' }
  }
}

function describeRequired (params: unknown): string {
  if (params !== null && typeof params === 'object') {
    const p = params as { requiredProperties?: unknown, additionalProperties?: unknown }
    if (Array.isArray(p.additionalProperties)) return String(p.additionalProperties[0])
    if (Array.isArray(p.requiredProperties)) return String(p.requiredProperties[0])
  }
  return 'options'
}

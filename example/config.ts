/**
 * Turns environment variables into server and hub options. Parsing happens
 * once, up front, so a typo in the environment stops the server at start
 * instead of surfacing as odd behaviour later.
 */
import type { BrokerOption, RegistryOption, WsHubOptions } from 'fastify-ws-hub'
import { apiKeyAuth } from './api-key.js'

export interface ExampleConfig {
  port: number
  host: string
  logLevel: string
  /** Everything the hub is registered with except the demo service. */
  hub: WsHubOptions
}

/** Which variables the example reads; `process.env` fits. */
export type Env = Record<string, string | undefined>

export const CONFIG_DEFAULTS = Object.freeze({
  port: 3000,
  // `localhost` makes Fastify listen on both 127.0.0.1 and ::1, so
  // http://localhost:3000 works whichever one the browser picks. The Docker
  // image sets HOST=0.0.0.0.
  host: 'localhost',
  logLevel: 'info'
})

export class ConfigError extends Error {
  override name = 'ConfigError'
}

export function readConfig (env: Env): ExampleConfig {
  const hub: WsHubOptions = { ...backends(env) }
  const perIp = integer(env, 'MAX_CONNECTIONS_PER_IP', 1, Number.MAX_SAFE_INTEGER)
  if (perIp !== undefined) hub.maxConnectionsPerIp = perIp
  // The hub refuses to guess: the push API is open only by an explicit
  // choice, made here for a demo that runs with no configuration at all.
  const apiKey = text(env, 'API_KEY')
  hub.rest = { auth: apiKey === undefined ? false : apiKeyAuth(apiKey) }
  return {
    port: integer(env, 'PORT', 0, 65_535) ?? CONFIG_DEFAULTS.port,
    host: text(env, 'HOST') ?? CONFIG_DEFAULTS.host,
    logLevel: text(env, 'LOG_LEVEL') ?? CONFIG_DEFAULTS.logLevel,
    hub
  }
}

/**
 * REDIS_URL alone: Redis carries messages and holds the registry.
 * KAFKA_BROKERS: Kafka carries messages; the registry (who is connected
 * where, per-IP counts) still needs Redis, because Kafka is not a store.
 * Neither: everything stays in this process.
 */
function backends (env: Env): { broker?: BrokerOption, registry?: RegistryOption } {
  const redisUrl = text(env, 'REDIS_URL')
  const kafkaBrokers = list(env, 'KAFKA_BROKERS')
  const result: { broker?: BrokerOption, registry?: RegistryOption } = {}
  if (redisUrl !== undefined) {
    result.broker = { type: 'redis', url: redisUrl }
    result.registry = { type: 'redis', url: redisUrl }
  }
  if (kafkaBrokers !== undefined) result.broker = { type: 'kafka', brokers: kafkaBrokers }
  return result
}

/** A set, non-blank variable, trimmed; blank counts as unset, as shells often export `X=`. */
function text (env: Env, name: string): string | undefined {
  const value = env[name]?.trim()
  return value === undefined || value === '' ? undefined : value
}

function list (env: Env, name: string): string[] | undefined {
  const value = text(env, name)
  if (value === undefined) return undefined
  const items = value.split(',').map((item) => item.trim()).filter((item) => item !== '')
  if (items.length === 0) throw new ConfigError(`${name} must be a comma-separated list (got ${JSON.stringify(env[name])})`)
  return items
}

function integer (env: Env, name: string, min: number, max: number): number | undefined {
  const value = text(env, name)
  if (value === undefined) return undefined
  // Number('') and Number('1e3') would slip through a plain Number() check.
  const parsed = /^\d+$/.test(value) ? Number(value) : Number.NaN
  if (!Number.isSafeInteger(parsed) || parsed < min || parsed > max) {
    throw new ConfigError(`${name} must be an integer from ${min} to ${max} (got ${JSON.stringify(env[name])})`)
  }
  return parsed
}

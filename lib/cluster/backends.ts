import type { FastifyBaseLogger } from 'fastify'
import type { Transport } from './transport.js'
import type { ClusterState } from './cluster-state.js'
import type { History } from './history.js'
import { MemoryHistory } from './memory/memory-history.js'
import { MemoryTransport } from './memory/memory-transport.js'
import { createMemoryClusterState } from './memory/memory-cluster-state.js'
import { MissingPackageError, OptionsError } from '../errors.js'
import { defaultHistory, type BrokerConfig, type HistoryConfig, type RegistryConfig } from '../options/backend-options.js'

export interface Owned<T> {
  value: T
  /**
   * Whether the hub created it, and so must close it. A backend built from a
   * client the user passed in closes only the connections it opened itself.
   */
  owned: boolean
}

/**
 * Loads a backend module whose npm package is an optional peer dependency,
 * so a memory-only hub installs and loads neither ioredis nor kafkajs.
 */
export async function loadBackend<T> (pkg: string, option: string, load: () => Promise<T>): Promise<T> {
  try {
    return await load()
  } catch (err) {
    if (isMissing(err, pkg)) {
      throw new MissingPackageError(`fastify-ws-hub: option "${option}" needs the "${pkg}" package, which is not installed; run: npm install ${pkg}`, { cause: err })
    }
    throw err
  }
}

function isMissing (err: unknown, pkg: string): boolean {
  if (!(err instanceof Error)) return false
  const code = (err as { code?: unknown }).code
  return (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && err.message.includes(`'${pkg}'`)
}

/** Builds the transport the `broker` option names; null when there is nobody to talk to. */
export async function createTransport (option: BrokerConfig, log: FastifyBaseLogger): Promise<Owned<Transport | null>> {
  switch (option.type) {
    case 'memory':
      // Without a shared bus there is nobody to talk to: skip the transport hop.
      return { value: option.bus === undefined ? null : new MemoryTransport(option.bus), owned: true }
    case 'custom':
      return { value: option.transport, owned: false }
    case 'redis': {
      if (option.cluster !== undefined) {
        const { RedisClusterTransport } = await loadBackend('ioredis', 'broker.cluster', async () => import('./redis/redis-cluster-transport.js'))
        return { value: new RedisClusterTransport({ ...option, cluster: option.cluster }, log), owned: true }
      }
      const { RedisTransport } = await loadBackend('ioredis', 'broker.type: redis', async () => import('./redis/redis-transport.js'))
      return { value: new RedisTransport(option, log), owned: true }
    }
    case 'kafka': {
      const { KafkaTransport } = await loadBackend('kafkajs', 'broker.type: kafka', async () => import('./kafka/kafka-transport.js'))
      return { value: new KafkaTransport(option, log), owned: true }
    }
    default:
      throw new OptionsError(`fastify-ws-hub: option "broker.type" must be one of memory, redis, kafka, custom (got ${JSON.stringify((option as { type: unknown }).type)})`)
  }
}

/** Builds the limiter and directory the `registry` option names; they share one backend. */
export async function createClusterState (option: RegistryConfig, log: FastifyBaseLogger): Promise<Owned<ClusterState>> {
  switch (option.type) {
    case 'memory':
      return { value: createMemoryClusterState(), owned: true }
    case 'custom':
      return { value: { limiter: option.limiter, directory: option.directory, presence: option.presence, close: async () => {} }, owned: false }
    case 'redis': {
      const { RedisClusterState } = await loadBackend('ioredis', 'registry.type: redis', async () => import('./redis/redis-cluster-state.js'))
      return { value: new RedisClusterState(option, log), owned: true }
    }
    default:
      throw new OptionsError(`fastify-ws-hub: option "registry.type" must be one of memory, redis, custom (got ${JSON.stringify((option as { type: unknown }).type)})`)
  }
}

/**
 * Builds the history store the `history` option names; left out, the
 * registry's Redis when the registry is Redis, memory otherwise. A Redis
 * store opens its own connection (from the URL, or a duplicate of the
 * given client), which it closes; a custom one is the user's.
 */
export async function createHistory (option: HistoryConfig | undefined, registry: RegistryConfig, log: FastifyBaseLogger): Promise<Owned<History>> {
  const config = option ?? defaultHistory(registry)
  switch (config.type) {
    case 'memory':
      return { value: new MemoryHistory(), owned: true }
    case 'custom':
      return { value: config.history, owned: false }
    case 'redis': {
      const { RedisHistory } = await loadBackend('ioredis', 'history.type: redis', async () => import('./redis/redis-history.js'))
      return { value: new RedisHistory(config, log), owned: true }
    }
    default:
      throw new OptionsError(`fastify-ws-hub: option "history.type" must be one of memory, redis, custom (got ${JSON.stringify((config as { type: unknown }).type)})`)
  }
}

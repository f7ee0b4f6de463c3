import type { FastifyBaseLogger } from 'fastify'
import type { RedisConnection } from '../../cluster/redis/connect.js'
import { loadBackend } from '../../cluster/backends.js'
import type { RegistryConfig } from '../../options/backend-options.js'
import type { LeaseFactory } from './lease.js'
import { MemoryLease } from './memory-lease.js'

/** How long an ordered source's registry lease lasts unless renewed: a dead holder's source moves after this. */
export const REGISTRY_LEASE_MS = 10_000

/**
 * Leases for `ordered` sources whose own service cannot hold one (MQTT):
 * in the registry's Redis when the registry is Redis, so the instances
 * that share the registry take turns; in this process otherwise (a custom
 * or memory registry: there is no shared store to take turns in). The
 * connection is opened on the first lease asked for, and closed with the hub.
 */
export class RegistryLeases {
  readonly #registry: RegistryConfig
  readonly #instanceId: string
  readonly #log: FastifyBaseLogger
  #client: RedisConnection | null = null
  #modules: { RedisLease: typeof import('./redis-lease.js').RedisLease, openConnection: typeof import('../../cluster/redis/connect.js').openConnection } | null = null

  private constructor (registry: RegistryConfig, instanceId: string, log: FastifyBaseLogger) {
    this.#registry = registry
    this.#instanceId = instanceId
    this.#log = log
  }

  /** Loads the Redis modules now (the factory is synchronous) when the registry is Redis. */
  static async create (registry: RegistryConfig, instanceId: string, log: FastifyBaseLogger): Promise<RegistryLeases> {
    const leases = new RegistryLeases(registry, instanceId, log)
    if (registry.type === 'redis') {
      leases.#modules = await loadBackend('ioredis', 'registry.type: redis', async () => ({
        RedisLease: (await import('./redis-lease.js')).RedisLease,
        openConnection: (await import('../../cluster/redis/connect.js')).openConnection
      }))
    }
    return leases
  }

  readonly factory: LeaseFactory = (key) => {
    const registry = this.#registry
    if (registry.type !== 'redis' || this.#modules === null) return new MemoryLease(key)
    this.#client ??= this.#modules.openConnection(registry, 'ws-hub source leases')
    return new this.#modules.RedisLease({ client: this.#client, key: `${registry.keyPrefix}source-lease:${key}`, holder: this.#instanceId, ttlMs: REGISTRY_LEASE_MS, log: this.#log })
  }

  async close (): Promise<void> {
    const client = this.#client
    this.#client = null
    if (client !== null) await (await import('../../cluster/redis/connect.js')).closeConnection(client)
  }
}

import type { FastifyBaseLogger } from 'fastify'
import type { ClusterState, ClusterStateHealth } from '../cluster-state.js'
import type { EvictionHandler } from '../limiter.js'
import type { RedisRegistryOptions } from '../../options/backend-options.js'
import { RedisDirectory } from './redis-directory.js'
import { RedisLimiter } from './redis-limiter.js'
import { RedisPresence } from './redis-presence.js'
import { RedisSession } from './redis-session.js'

export { DEFAULT_KEY_PREFIX, DEFAULT_LEASE_MS, MIN_LEASE_MS } from './redis-session.js'

/**
 * Cluster state in Redis, shared by every hub instance that uses the same
 * Redis and `keyPrefix`. The limiter, the directory and presence share one session:
 * one connection, one lease, one repair of this instance's state (see
 * `RedisSession`). A single Redis, a Sentinel group or a Redis Cluster;
 * on a cluster every key is in one slot (why, in `keys.ts`), so all of it
 * lives on one shard, and a failover of that shard is an outage of a few
 * seconds after which each instance restores its own state.
 *
 * With `client`, the session works on a duplicate and never closes the
 * client itself.
 */
export class RedisClusterState implements ClusterState {
  readonly limiter: RedisLimiter
  readonly directory: RedisDirectory
  readonly presence: RedisPresence
  readonly #session: RedisSession

  constructor (options: RedisRegistryOptions, log: FastifyBaseLogger) {
    this.#session = new RedisSession(options, log)
    this.limiter = new RedisLimiter(this.#session)
    this.directory = new RedisDirectory(this.#session)
    this.presence = new RedisPresence(this.#session)
  }

  /**
   * 'down' from the moment the connection drops, including when the
   * watchdog finds Redis hung (see `STALL_DETECTION_MS` in `connect.ts`),
   * or a lease renewal fails, until Redis answers again.
   */
  state (): ClusterStateHealth {
    return this.#session.healthy ? 'up' : 'down'
  }

  /** Fencing after a lapsed lease (see `RedisSession`). */
  onEvict (handler: EvictionHandler): void {
    this.#session.onEvict(handler)
  }

  /** Idempotent; does not leave (see `RedisSession.close`). */
  async close (): Promise<void> {
    this.presence.stop()
    await this.#session.close()
  }
}

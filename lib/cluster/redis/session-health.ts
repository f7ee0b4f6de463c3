/** Whether the Redis cluster state answers, as the session last saw it, and the log of each change. */
import type { FastifyBaseLogger } from 'fastify'
import { ClusterStateError } from '../../errors.js'

/**
 * Logs each change of reachability once: warn with the cause, info on
 * recovery. A long outage is one warning, not one per failed renewal.
 */
export class SessionHealth {
  readonly #log: FastifyBaseLogger
  readonly #leaseMs: number
  /** null before the first report: the first success is not a recovery. */
  #healthy: boolean | null = null
  #lastError: unknown = undefined

  constructor (log: FastifyBaseLogger, leaseMs: number) {
    this.#log = log
    this.#leaseMs = leaseMs
  }

  /** False from a dropped connection or a failed renewal until Redis answers again (before the first connect: true). */
  get healthy (): boolean {
    return this.#healthy !== false
  }

  /**
   * The connection's latest error. ioredis reports it apart from the close
   * that follows, so it is kept as the cause for a report that has none.
   */
  noteError (err: unknown): void {
    this.#lastError = err
  }

  report (healthy: boolean, err: unknown, instanceId: string | null): void {
    if (healthy === this.#healthy) return
    const first = this.#healthy === null
    this.#healthy = healthy
    if (healthy) {
      this.#lastError = undefined
      if (!first) this.#log.info({ instanceId }, 'ws-hub: Redis cluster state reachable again')
      return
    }
    this.#log.warn({ err: err ?? this.#lastError ?? new ClusterStateError('connection to Redis closed'), instanceId, leaseMs: this.#leaseMs },
      'ws-hub: Redis cluster state unreachable; handshakes fail until it answers, then this instance\'s slots and connections are restored there')
  }
}

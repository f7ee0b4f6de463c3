import type { FastifyBaseLogger } from 'fastify'
import type { ConnectionManager } from './connection-manager.js'
import type { NormalizedOptions } from '../options/hub-options.js'
import { CloseCodes } from '../protocol/frames.js'

/**
 * Re-checks authenticated sessions every `revalidateIntervalMs`: a token that
 * expired or a user who was banned loses the socket (1008) without waiting
 * for the client to reconnect.
 */
export class Revalidator {
  closed = 0
  readonly #connections: ConnectionManager
  readonly #options: NormalizedOptions
  readonly #log: FastifyBaseLogger
  #timer: NodeJS.Timeout | null = null
  #running = false

  constructor (connections: ConnectionManager, options: NormalizedOptions, log: FastifyBaseLogger) {
    this.#connections = connections
    this.#options = options
    this.#log = log
  }

  start (): void {
    if (this.#options.revalidate === undefined || this.#timer !== null) return
    this.#timer = setInterval(() => {
      this.run().catch((err: unknown) => this.#log.error({ err }, 'ws-hub: revalidation pass failed'))
    }, this.#options.revalidateIntervalMs).unref()
  }

  /** One pass over every authenticated connection. Overlapping passes are skipped. */
  async run (): Promise<void> {
    const revalidate = this.#options.revalidate
    if (revalidate === undefined || this.#running) return
    this.#running = true
    try {
      const checks: Array<Promise<void>> = []
      for (const connection of this.#connections.all()) {
        const identity = connection.identity
        if (identity === null) continue
        checks.push((async () => {
          let valid = false
          try {
            valid = await revalidate(identity, connection.id)
          } catch (err) {
            this.#log.warn({ err, clientId: connection.id, userId: identity.userId }, 'ws-hub: revalidate threw; closing the session')
          }
          if (valid !== true) {
            this.closed++
            this.#log.info({ clientId: connection.id, userId: identity.userId }, 'ws-hub: session no longer valid, closing')
            this.#connections.close(connection, CloseCodes.policyViolation, 'session expired')
          }
        })())
      }
      await Promise.all(checks)
    } finally {
      this.#running = false
    }
  }

  stop (): void {
    if (this.#timer !== null) clearInterval(this.#timer)
    this.#timer = null
  }
}

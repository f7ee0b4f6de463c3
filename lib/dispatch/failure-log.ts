import type { FastifyBaseLogger } from 'fastify'

/**
 * During an outage of Redis or Kafka every publish, connect and disconnect
 * fails; one error line per failure would flood the logs. Logs the first
 * failure, then a summary at most every `intervalMs` while failures go on.
 */
export class FailureLog {
  readonly #log: FastifyBaseLogger
  readonly #message: string
  readonly #intervalMs: number
  #lastLoggedAt = -Infinity
  #suppressed = 0

  constructor (log: FastifyBaseLogger, message: string, intervalMs = 10_000) {
    this.#log = log
    this.#message = message
    this.#intervalMs = intervalMs
  }

  record (err: unknown, context: Record<string, unknown>): void {
    const now = Date.now()
    if (now - this.#lastLoggedAt < this.#intervalMs) {
      this.#suppressed++
      return
    }
    this.#log.error({ err, ...context, suppressedSinceLastLog: this.#suppressed }, this.#message)
    this.#lastLoggedAt = now
    this.#suppressed = 0
  }
}

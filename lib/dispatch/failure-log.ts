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
  readonly #level: 'warn' | 'error'
  #lastLoggedAt = -Infinity
  #suppressed = 0

  constructor (log: FastifyBaseLogger, message: string, intervalMs = 10_000, level: 'warn' | 'error' = 'error') {
    this.#log = log
    this.#message = message
    this.#intervalMs = intervalMs
    this.#level = level
  }

  record (err: unknown, context: Record<string, unknown>): void {
    const now = Date.now()
    if (now - this.#lastLoggedAt < this.#intervalMs) {
      this.#suppressed++
      return
    }
    this.#log[this.#level]({ err, ...context, suppressedSinceLastLog: this.#suppressed }, this.#message)
    this.#lastLoggedAt = now
    this.#suppressed = 0
  }
}

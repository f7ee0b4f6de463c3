/** When the Kafka transport restarts its consumer after a crash, with backoff. */
import type { FastifyBaseLogger } from 'fastify'
import { RETRY_MAX_MS } from './kafka-cluster.js'

// The first restart's delay, doubled per failed attempt up to RETRY_MAX_MS.
const RESTART_BASE_MS = 250

/**
 * Our own consumer restarts: kafkajs is told never to restart by itself, so
 * retriable and fatal crashes take one path, with one backoff. The backoff
 * is reset by every group join (`joined`).
 */
export class ConsumerRestarts {
  readonly #restart: () => Promise<void>
  readonly #log: FastifyBaseLogger
  #timer: NodeJS.Timeout | null = null
  #running: Promise<void> | null = null
  #attempts = 0

  /** `restart` makes one attempt; a failed one calls `schedule` again. */
  constructor (restart: () => Promise<void>, log: FastifyBaseLogger) {
    this.#restart = restart
    this.#log = log
  }

  /** The restart attempt in progress, if any: close() waits for it, or it would reconnect after the disconnect. */
  get inFlight (): Promise<void> | null {
    return this.#running
  }

  /** Schedules the next attempt after the consumer stopped with `error`; a pending one is replaced. */
  schedule (error: Error, groupId: string): void {
    const delay = Math.min(RETRY_MAX_MS, RESTART_BASE_MS * 2 ** this.#attempts)
    this.#attempts++
    // The first failure is news; the retries of a long outage are not.
    const level = this.#attempts === 1 ? 'warn' : 'debug'
    this.#log[level]({ err: error, groupId, attempt: this.#attempts, restartInMs: delay }, 'ws-hub: kafka consumer stopped; restarting it')
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = setTimeout(() => {
      this.#timer = null
      this.#running = this.#restart().finally(() => { this.#running = null })
    }, delay)
    // Nothing to restart for if the rest of the process is done.
    this.#timer.unref()
  }

  /** The consumer joined its group: the next crash is news again. */
  joined (): void {
    this.#attempts = 0
  }

  /** Cancels a scheduled attempt; one in flight is left to `inFlight`. */
  stop (): void {
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
  }
}

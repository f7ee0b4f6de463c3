import type { FastifyBaseLogger } from 'fastify'
import type pg from 'pg'
import { backoffDelay } from '../../client/backoff.js'
import { hold, type HeldClient } from './pool-client.js'

/** Reconnect delays of the listening session: quick at first, at most 5 s apart. */
const RECONNECT = { initialDelayMs: 100, maxDelayMs: 5_000, factor: 2, jitter: 0.5 }

/**
 * The session that `LISTEN`s on the outbox's channel and rings `wake` on
 * each notification. It reconnects by itself when its connection drops,
 * and rings `wake` then too: rows committed while nobody listened
 * notified nobody. Its failures are logged, not reported as the source
 * being down: the claim loop still polls, so the source reads on, only
 * with the poll's delay.
 */
export class OutboxListener {
  readonly #pool: pg.Pool
  readonly #sql: { listen: string, unlisten: string }
  readonly #wake: () => void
  readonly #log: FastifyBaseLogger
  #held: HeldClient | null = null
  #attempt = 0
  #timer: NodeJS.Timeout | null = null
  #closed = false

  constructor (pool: pg.Pool, sql: { listen: string, unlisten: string }, wake: () => void, log: FastifyBaseLogger) {
    this.#pool = pool
    this.#sql = sql
    this.#wake = wake
    this.#log = log
  }

  /** Resolves after the first attempt, listening or not; a failed one is retried. */
  async start (): Promise<void> {
    await this.#connect()
  }

  async close (): Promise<void> {
    this.#closed = true
    if (this.#timer !== null) clearTimeout(this.#timer)
    const held = this.#held
    this.#held = null
    if (held === null) return
    held.client.off('notification', this.#notified)
    try {
      await held.client.query(this.#sql.unlisten)
      held.release()
    } catch {
      // The session is gone or doubtful: closing it ends its LISTEN too.
      held.release(true)
    }
  }

  readonly #notified = (): void => { this.#wake() }

  async #connect (): Promise<void> {
    this.#timer = null
    if (this.#closed) return
    let held: HeldClient | null = null
    try {
      held = await hold(this.#pool, (err) => { this.#lost(err) })
      held.client.on('notification', this.#notified)
      await held.client.query(this.#sql.listen)
      if (!held.alive) throw new Error('the listening connection ended')
    } catch (err) {
      held?.release(true)
      this.#retry(err)
      return
    }
    if (this.#closed) {
      held.release(true)
      return
    }
    if (this.#attempt > 0) this.#log.info('ws-hub: outbox source is listening again')
    this.#attempt = 0
    this.#held = held
    this.#wake()
  }

  #lost (err: Error): void {
    const held = this.#held
    // A session lost while connecting fails its LISTEN: that path retries.
    if (held === null) return
    this.#held = null
    held.release(true)
    this.#retry(err)
    this.#wake()
  }

  #retry (err: unknown): void {
    if (this.#closed) return
    if (this.#attempt === 0) this.#log.warn({ err }, 'ws-hub: outbox source cannot LISTEN; it polls meanwhile and reconnects by itself')
    this.#attempt++
    this.#timer = setTimeout(() => { this.#connect().catch(() => {}) }, backoffDelay(this.#attempt, RECONNECT))
    this.#timer.unref()
  }
}

import type pg from 'pg'
import { hold, type HeldClient } from './pool-client.js'

/**
 * The session-level advisory lock an `ordered` outbox is read under: one
 * instance at a time holds it. It is held by a session, so it goes with
 * its connection: when that connection dies, PostgreSQL frees the lock
 * and another instance takes it. The holder reads on that same session,
 * so its claim dies with the lock and never overlaps the next holder's.
 */
export class OutboxLock {
  readonly #pool: pg.Pool
  readonly #key: string
  readonly #onLost: (err: Error) => void
  #held: HeldClient | null = null

  constructor (pool: pg.Pool, key: string, onLost: (err: Error) => void) {
    this.#pool = pool
    this.#key = key
    this.#onLost = onLost
  }

  held (): boolean {
    return this.#held?.alive === true
  }

  /** The session holding the lock, taking the lock if it is free; null while another instance holds it. */
  async session (): Promise<pg.PoolClient | null> {
    if (this.#held?.alive === true) return this.#held.client
    this.#held = null
    const held = await hold(this.#pool, (err) => { this.#lost(held, err) })
    let locked: boolean
    try {
      const { rows } = await held.client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1::bigint) AS locked', [this.#key])
      locked = rows[0]?.locked === true && held.alive
    } catch (err) {
      held.release(true)
      throw err
    }
    if (!locked) {
      held.release()
      return null
    }
    this.#held = held
    return held.client
  }

  /**
   * Gives the lock up by closing its session: after a failed claim we
   * cannot tell whether the session is sound, and a lock on a doubtful
   * session is worse than a handover.
   */
  drop (): void {
    const held = this.#held
    this.#held = null
    held?.release(true)
  }

  /** Unlocks and hands the session back, so another instance takes over at once. */
  async release (): Promise<void> {
    const held = this.#held
    this.#held = null
    if (held === null) return
    try {
      await held.client.query('SELECT pg_advisory_unlock($1::bigint)', [this.#key])
      held.release()
    } catch {
      held.release(true)
    }
  }

  #lost (held: HeldClient, err: Error): void {
    if (this.#held !== held) return
    this.#held = null
    held.release(true)
    this.#onLost(err)
  }
}

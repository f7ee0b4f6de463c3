import type { Limiter } from '../cluster/limiter.js'
import type { FailureLog } from '../dispatch/failure-log.js'

/**
 * The limiter slots one connection holds: its IP's and, once authenticated,
 * its user's. Several events may end a connection (the socket closes, the
 * handshake aborts, the client hangs up during a hook); whichever comes
 * first releases them, and only that one.
 */
export class Slot {
  readonly ip: string
  #userId: string | null = null
  #released = false
  readonly #limiter: Limiter
  readonly #failures: FailureLog

  constructor (limiter: Limiter, ip: string, failures: FailureLog) {
    this.#limiter = limiter
    this.ip = ip
    this.#failures = failures
  }

  get released (): boolean {
    return this.#released
  }

  /** Records the user slot reserved for this connection, so release frees it too. */
  holdUser (userId: string): void {
    this.#userId = userId
  }

  release (): void {
    if (this.#released) return
    this.#released = true
    this.#limiter.release(this.ip).catch((err: unknown) => this.#failures.record(err, { ip: this.ip, action: 'release IP slot' }))
    const userId = this.#userId
    if (userId !== null) {
      this.#limiter.releaseUser(userId).catch((err: unknown) => this.#failures.record(err, { userId, action: 'release user slot' }))
    }
  }
}

import { backoffDelay, type BackoffOptions } from './backoff.js'

/**
 * Where and when the next attempt goes: the URL (several instances are tried
 * in turn, one per attempt), whether a close is retried at all, and the
 * backoff delay, counted in failed attempts since the last welcome.
 */
export class ReconnectPlan {
  readonly #urls: readonly string[]
  readonly #backoff: BackoffOptions | false
  readonly #noReconnect: ReadonlySet<number>
  #index = 0
  #attempt = 0
  #timer: ReturnType<typeof setTimeout> | undefined

  constructor (urls: readonly string[], backoff: BackoffOptions | false, noReconnectCodes: Iterable<number>) {
    this.#urls = urls
    this.#backoff = backoff
    this.#noReconnect = new Set(noReconnectCodes)
  }

  /** The URL of the current attempt (or of the next, between attempts). */
  get url (): string {
    return this.#urls[this.#index] as string
  }

  /** Whether a close with this code is retried (the server meant some codes). */
  retries (code: number): boolean {
    return this.#backoff !== false && !this.#noReconnect.has(code)
  }

  /** A connection closed: the next attempt goes to the next instance. */
  closed (): void {
    this.#index = (this.#index + 1) % this.#urls.length
  }

  /** A welcome, or a fresh `connect()`: backoff starts over. */
  reset (): void {
    this.#attempt = 0
  }

  /** Runs `attempt` after the backoff delay; returns the attempt number and delay, or null when not retrying. */
  schedule (attempt: () => void): { attempt: number, delayMs: number } | null {
    const backoff = this.#backoff
    if (backoff === false) return null
    this.#attempt++
    const delayMs = backoffDelay(this.#attempt, backoff)
    this.#timer = setTimeout(attempt, delayMs)
    return { attempt: this.#attempt, delayMs }
  }

  cancel (): void {
    clearTimeout(this.#timer)
  }
}

import type { Connection } from './connection.js'
import type { RateLimit } from '../options/hub-options.js'

export type MessageVerdict = 'ok' | 'refused' | 'flooding'

/**
 * Per-connection token bucket: `max` messages per `intervalMs`, refilled
 * continuously. The state lives in plain fields on the connection (no
 * closure or timer per socket). A client refused more than `max` times in a
 * row is flooding and will be closed.
 */
export function takeMessageToken (connection: Connection, limit: RateLimit, now: number): MessageVerdict {
  if (connection.refilledAt === 0) {
    connection.tokens = limit.max
    connection.refilledAt = now
  } else {
    const refill = ((now - connection.refilledAt) * limit.max) / limit.intervalMs
    if (refill > 0) {
      connection.tokens = Math.min(limit.max, connection.tokens + refill)
      connection.refilledAt = now
    }
  }
  if (connection.tokens >= 1) {
    connection.tokens -= 1
    connection.refusedInARow = 0
    return 'ok'
  }
  connection.refusedInARow++
  return connection.refusedInARow > limit.max ? 'flooding' : 'refused'
}

const DEFAULT_MAX_KEYS = 100_000

/**
 * New connections per key (IP) in fixed windows. Memory is bounded: past
 * `maxKeys` the oldest windows are evicted (an evicted key simply starts a
 * fresh window), and `sweep` drops expired ones.
 */
export class WindowCounter {
  readonly #limit: RateLimit
  readonly #maxKeys: number
  readonly #windows = new Map<string, { count: number, startedAt: number }>()

  constructor (limit: RateLimit, maxKeys = DEFAULT_MAX_KEYS) {
    this.#limit = limit
    this.#maxKeys = maxKeys
  }

  /** Counts one attempt; false when the key is over its limit in this window. */
  hit (key: string, now: number): boolean {
    let window = this.#windows.get(key)
    if (window === undefined || now - window.startedAt >= this.#limit.intervalMs) {
      if (window !== undefined) this.#windows.delete(key)
      window = { count: 0, startedAt: now }
      this.#windows.set(key, window)
      if (this.#windows.size > this.#maxKeys) this.#evictOldest()
    }
    window.count++
    return window.count <= this.#limit.max
  }

  sweep (now: number): void {
    for (const [key, window] of this.#windows) {
      if (now - window.startedAt >= this.#limit.intervalMs) this.#windows.delete(key)
    }
  }

  get size (): number {
    return this.#windows.size
  }

  #evictOldest (): void {
    // A window is re-inserted when it restarts, so insertion order is start
    // order and the front holds the oldest (most likely expired) windows.
    for (const key of this.#windows.keys()) {
      if (this.#windows.size <= this.#maxKeys) return
      this.#windows.delete(key)
    }
  }
}

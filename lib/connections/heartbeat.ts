import type { ConnectionManager } from './connection-manager.js'

export interface Timers {
  setInterval: (callback: () => void, ms: number) => unknown
  clearInterval: (handle: unknown) => void
}

const realTimers: Timers = {
  setInterval: (callback, ms) => setInterval(callback, ms).unref(),
  clearInterval: (handle) => clearInterval(handle as NodeJS.Timeout)
}

/**
 * Protocol-level pings. A socket that has not answered the previous ping by
 * the next tick is terminated and unregistered: half-open TCP connections
 * otherwise stay "live" for hours.
 */
export class Heartbeat {
  terminated = 0
  readonly #connections: ConnectionManager
  readonly #interval: number
  readonly #timers: Timers
  #handle: unknown = null

  constructor (connections: ConnectionManager, interval: number, timers: Timers = realTimers) {
    this.#connections = connections
    this.#interval = interval
    this.#timers = timers
  }

  start (): void {
    if (this.#interval === 0 || this.#handle !== null) return
    this.#handle = this.#timers.setInterval(() => this.tick(), this.#interval)
  }

  tick (): void {
    for (const connection of this.#connections.all()) {
      if (!connection.alive) {
        this.terminated++
        this.#connections.remove(connection)
        connection.socket.terminate()
        continue
      }
      connection.alive = false
      try {
        connection.socket.ping()
      } catch {
        // ping throws only on a socket that is not open: it is already gone.
        this.#connections.remove(connection)
      }
    }
  }

  stop (): void {
    if (this.#handle === null) return
    this.#timers.clearInterval(this.#handle)
    this.#handle = null
  }
}

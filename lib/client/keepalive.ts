import { ClientErrorCodes, HubClientError } from './errors.js'

/**
 * Pings the server on an open connection, so one that stops answering is
 * noticed: a half-open TCP connection (a sleeping laptop, a dropped NAT
 * entry) looks open to the socket until something is sent and not answered.
 */
export class Keepalive {
  readonly #intervalMs: number
  readonly #ping: () => Promise<unknown>
  readonly #onSilent: (reason: string) => void
  #timer: ReturnType<typeof setInterval> | undefined
  // One ping at a time: a slow pong is not a reason to pile up more.
  #inFlight = false

  /**
   * `intervalMs` 0 turns pings off. `ping` sends one and settles with its
   * pong or its error; `onSilent` is called when it timed out.
   */
  constructor (intervalMs: number, ping: () => Promise<unknown>, onSilent: (reason: string) => void) {
    this.#intervalMs = intervalMs
    this.#ping = ping
    this.#onSilent = onSilent
  }

  /** Starts pinging a newly opened connection; `current` is false once the client has dropped it. */
  start (current: () => boolean): void {
    if (this.#intervalMs === 0) return
    this.#inFlight = false
    this.#timer = setInterval(() => {
      if (this.#inFlight || !current()) return
      this.#inFlight = true
      this.#ping().then(() => {
        this.#inFlight = false
      }, (err: unknown) => {
        this.#inFlight = false
        // A ping rejected because its connection went is not news.
        if (!current()) return
        if (err instanceof HubClientError && err.code === ClientErrorCodes.pongTimeout) this.#onSilent(err.message)
      })
    }, this.#intervalMs)
  }

  stop (): void {
    clearInterval(this.#timer)
  }
}

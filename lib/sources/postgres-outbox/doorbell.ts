/**
 * Wakes the claim loop: a notification, a reconnected listener, a failed
 * idle connection, or close. A ring while nobody waits is kept, so one
 * that arrives during a claim makes the next wait return at once.
 */
export class Doorbell {
  #rung = false
  #wake: (() => void) | null = null

  ring (): void {
    this.#rung = true
    this.#wake?.()
  }

  clear (): void {
    this.#rung = false
  }

  /** Resolves on a ring (or one kept from before), after `ms`, or when `signal` aborts. */
  async wait (ms: number, signal: AbortSignal): Promise<void> {
    if (this.#rung || signal.aborted) {
      this.#rung = false
      return
    }
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer)
        signal.removeEventListener('abort', done)
        this.#wake = null
        this.#rung = false
        resolve()
      }
      const timer = setTimeout(done, ms)
      signal.addEventListener('abort', done, { once: true })
      this.#wake = done
    })
  }
}

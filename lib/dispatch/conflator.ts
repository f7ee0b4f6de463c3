const NOTHING = Symbol('nothing pending')

interface Window {
  latest: unknown
  timer: NodeJS.Timeout
}

/**
 * Latest-value throttling per key: the first value in a window goes out at
 * once, later ones replace each other, and the last goes out when the window
 * ends. A price ticker at 10k updates/s reaches a dashboard at 1/throttleMs
 * with the newest value; replaced values are counted, not silently lost.
 * Memory: one entry per key active within the last window.
 */
export class Conflator {
  dropped = 0
  readonly #windows = new Map<string, Window>()

  /** Returns true when `value` went out now, false when it is held for the window's end. */
  submit (key: string, value: unknown, throttleMs: number, send: (value: unknown) => void): boolean {
    const open = this.#windows.get(key)
    if (open !== undefined) {
      if (open.latest !== NOTHING) this.dropped++
      open.latest = value
      return false
    }
    send(value)
    this.#open(key, throttleMs, send)
    return true
  }

  #open (key: string, throttleMs: number, send: (value: unknown) => void): void {
    const window: Window = {
      latest: NOTHING,
      timer: setTimeout(() => {
        this.#windows.delete(key)
        if (window.latest === NOTHING) return
        send(window.latest)
        this.#open(key, throttleMs, send)
      }, throttleMs).unref()
    }
    this.#windows.set(key, window)
  }

  /** Drops every held value (counted) and clears the timers. */
  stop (): void {
    for (const window of this.#windows.values()) {
      clearTimeout(window.timer)
      if (window.latest !== NOTHING) this.dropped++
    }
    this.#windows.clear()
  }
}

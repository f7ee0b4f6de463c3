type Handler = (payload: unknown) => void

/**
 * A minimal event emitter: a map of handler sets. `on` returns the function
 * that removes the handler. A handler that throws does not stop the others
 * or the client; its error is rethrown on a fresh task, as EventTarget
 * does, so it reaches `window.onerror` or Node's `uncaughtException`
 * instead of vanishing.
 */
export class Emitter {
  readonly #handlers = new Map<string, Set<Handler>>()

  on (type: string, handler: Handler): () => void {
    let set = this.#handlers.get(type)
    if (set === undefined) {
      set = new Set()
      this.#handlers.set(type, set)
    }
    // A wrapper, so the same function registered twice is two registrations.
    const entry: Handler = (payload) => handler(payload)
    set.add(entry)
    return () => {
      set.delete(entry)
      if (set.size === 0 && this.#handlers.get(type) === set) this.#handlers.delete(type)
    }
  }

  emit (type: string, payload: unknown): void {
    const set = this.#handlers.get(type)
    if (set === undefined) return
    for (const handler of [...set]) {
      try {
        handler(payload)
      } catch (err) {
        setTimeout(() => { throw err }, 0)
      }
    }
  }

  clear (): void {
    this.#handlers.clear()
  }
}

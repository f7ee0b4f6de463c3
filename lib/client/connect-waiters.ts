import type { HubClientError } from './errors.js'

interface Waiter {
  resolve: (clientId: string) => void
  reject: (error: HubClientError) => void
}

/** The `connect()` calls waiting for a welcome: each settled once, by the next welcome or by the client giving up. */
export class ConnectWaiters {
  #waiters: Waiter[] = []

  wait (): Promise<string> {
    return new Promise<string>((resolve, reject) => { this.#waiters.push({ resolve, reject }) })
  }

  resolve (clientId: string): void {
    for (const waiter of this.#take()) waiter.resolve(clientId)
  }

  reject (error: HubClientError): void {
    for (const waiter of this.#take()) waiter.reject(error)
  }

  // Taken before settling, so a handler that calls connect() again waits for the next welcome.
  #take (): Waiter[] {
    const waiters = this.#waiters
    this.#waiters = []
    return waiters
  }
}

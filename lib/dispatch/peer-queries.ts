import { randomUUID } from 'node:crypto'
import { HubClosedError, QueryTimeoutError } from '../errors.js'
import type { RemoteConnection } from '../cluster/envelope.js'

interface Pending {
  resolve: (connections: RemoteConnection[]) => void
  reject: (err: Error) => void
  timer: NodeJS.Timeout
}

/**
 * Requests to other instances awaiting their reply. Every request ends: by
 * its reply, by its timeout, or at shutdown, so the map cannot grow with
 * peers that never answer.
 */
export class PeerQueries {
  readonly #pending = new Map<string, Pending>()
  readonly #timeoutMs: number
  readonly #prefix = randomUUID()
  #next = 0

  constructor (timeoutMs: number) {
    this.#timeoutMs = timeoutMs
  }

  /** Registers a request; `send` hands it to the transport with the id it is given. */
  async ask (instanceId: string, send: (requestId: string) => Promise<void>): Promise<RemoteConnection[]> {
    const requestId = `${this.#prefix}:${++this.#next}`
    const answer = new Promise<RemoteConnection[]>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(requestId)
        reject(new QueryTimeoutError(`instance ${instanceId} did not answer within ${this.#timeoutMs} ms`))
      }, this.#timeoutMs)
      this.#pending.set(requestId, { resolve, reject, timer })
    })
    try {
      await send(requestId)
    } catch (err) {
      this.#settle(requestId)?.reject(err instanceof Error ? err : new Error(String(err)))
    }
    return await answer
  }

  /** A reply arrived; unknown or late ids (timed out already) are ignored. */
  answer (requestId: string, connections: RemoteConnection[]): void {
    this.#settle(requestId)?.resolve(connections)
  }

  /** Fails every open request (shutdown). */
  stop (): void {
    for (const id of [...this.#pending.keys()]) this.#settle(id)?.reject(new HubClosedError('the hub is closing'))
  }

  #settle (requestId: string): Pending | undefined {
    const pending = this.#pending.get(requestId)
    if (pending === undefined) return undefined
    this.#pending.delete(requestId)
    clearTimeout(pending.timer)
    return pending
  }
}

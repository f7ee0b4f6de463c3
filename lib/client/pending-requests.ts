import { ClientErrorCodes, HubClientError } from './errors.js'
import type { ErrorFrame, OutgoingClientFrame, ReplyMap, WebSocketLike } from './types.js'

/** The frames that answer a request by its id. */
export type Reply = ReplyMap[keyof ReplyMap]

interface Pending {
  expect: Reply['type']
  resolve: (frame: Reply) => void
  reject: (error: HubClientError) => void
  timer: ReturnType<typeof setTimeout>
}

/**
 * Requests waiting for their answer, by id. Every one is settled exactly
 * once: by its `ack` (or `pong`, `presence` page or `history` reply), its `error` frame, its timeout, or
 * `rejectAll` when the socket goes: no promise is left hanging.
 */
export class PendingRequests {
  readonly #pending = new Map<number, Pending>()
  #nextId = 1

  /** Sends the frame with a fresh id; the promise settles on the matching answer. */
  send<T extends Reply['type']> (socket: WebSocketLike, frame: OutgoingClientFrame, expect: T, timeoutMs: number): Promise<ReplyMap[T]> {
    const id = this.#nextId++
    return new Promise<ReplyMap[T]>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id)
        const code = expect === 'pong' ? ClientErrorCodes.pongTimeout : ClientErrorCodes.ackTimeout
        reject(new HubClientError(code, `no ${expect} for "${frame.type}" (id ${id}) within ${timeoutMs} ms`))
      }, timeoutMs)
      // settle() only hands it a frame whose type is `expect`.
      this.#pending.set(id, { expect, resolve: resolve as (frame: Reply) => void, reject, timer })
      try {
        socket.send(JSON.stringify({ ...frame, id }))
      } catch (err) {
        clearTimeout(timer)
        this.#pending.delete(id)
        reject(new HubClientError(ClientErrorCodes.sendFailed, `could not send "${frame.type}"`, { cause: err }))
      }
    })
  }

  settle (frame: Reply): void {
    if (frame.id === undefined || typeof frame.id !== 'number') return
    const pending = this.#pending.get(frame.id)
    if (pending === undefined || pending.expect !== frame.type) return
    this.#pending.delete(frame.id)
    clearTimeout(pending.timer)
    pending.resolve(frame)
  }

  refuse (frame: ErrorFrame): void {
    if (typeof frame.id !== 'number') return
    const pending = this.#pending.get(frame.id)
    if (pending === undefined) return
    this.#pending.delete(frame.id)
    clearTimeout(pending.timer)
    pending.reject(new HubClientError(frame.code, frame.message, { frame }))
  }

  rejectAll (error: HubClientError): void {
    const pending = [...this.#pending.values()]
    this.#pending.clear()
    for (const entry of pending) {
      clearTimeout(entry.timer)
      entry.reject(error)
    }
  }
}

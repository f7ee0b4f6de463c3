import type { WebSocket } from 'ws'
import type { SocketWriter } from './socket-writer.js'
import { streamOf, TickCork } from './tick-cork.js'

export interface SendWriterOptions {
  /** Coalesce each socket's writes of a tick into one syscall (lib/connections/tick-cork.ts). Default true. */
  coalesce?: boolean
}

/**
 * Writes through ws' public `socket.send`, so it relies on nothing private
 * in ws except, when coalescing, the `_socket` stream it corks; a socket
 * without one is written to uncorked.
 */
export class SendWriter implements SocketWriter {
  readonly #cork: TickCork | null

  constructor (options: SendWriterOptions = {}) {
    this.#cork = (options.coalesce ?? true) ? new TickCork() : null
  }

  write (socket: WebSocket, data: Buffer): void {
    const stream = this.#cork === null ? null : streamOf(socket)
    if (this.#cork === null || stream === null || !stream.writable) {
      socket.send(data, { binary: false })
      return
    }
    this.#cork.hold(socket, stream)
    // What the stream gained is exactly what the cork holds back; a send that
    // ws queues instead (a sender busy with a Blob) adds nothing here.
    const before = stream.writableLength
    socket.send(data, { binary: false })
    this.#cork.count(socket, stream.writableLength - before)
  }

  unsentBytes (socket: WebSocket): number {
    const buffered = socket.bufferedAmount
    return buffered === 0 || this.#cork === null ? buffered : buffered - this.#cork.heldBytes(socket)
  }

  flush (): void {
    this.#cork?.release()
  }
}

import type { WebSocket } from 'ws'

/**
 * How the connection manager puts text frames on sockets. Delivery is at
 * most once and in call order per socket: a write to a socket that is not
 * OPEN is dropped by ws, as `socket.send` drops it.
 */
export interface SocketWriter {
  /**
   * Writes one text frame carrying `data`: on the wire, the same bytes as
   * `socket.send(data, { binary: false })`. `data` must not be modified
   * afterwards (the same holds for `send`).
   */
  write: (socket: WebSocket, data: Buffer) => void
  /**
   * Bytes written to `socket` that are genuinely waiting on the client: what
   * the slow-consumer rule judges. Bytes the writer itself holds back until
   * the end of the tick are not counted.
   */
  unsentBytes: (socket: WebSocket) => number
  /** Sends now what the writer holds back until the end of the tick. */
  flush: () => void
}

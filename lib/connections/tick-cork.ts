import type { WebSocket } from 'ws'

/** The public stream calls made on the net.Socket under a ws WebSocket. */
export interface CorkableStream {
  cork: () => void
  uncork: () => void
  readonly writable: boolean
  readonly writableLength: number
}

const streams = new WeakMap<object, CorkableStream | null>()

/**
 * The net.Socket a ws WebSocket writes to (`websocket._socket`, private,
 * set by ws' `setSocket` and never replaced), or null for anything else,
 * such as a test double. Looked up once per socket.
 */
export function streamOf (socket: WebSocket): CorkableStream | null {
  let stream = streams.get(socket)
  if (stream === undefined) {
    const candidate: unknown = Reflect.get(socket, '_socket')
    stream = isCorkable(candidate) ? candidate : null
    streams.set(socket, stream)
  }
  return stream
}

export function isCorkable (value: unknown): value is CorkableStream {
  return typeof value === 'object' && value !== null &&
    typeof Reflect.get(value, 'cork') === 'function' &&
    typeof Reflect.get(value, 'uncork') === 'function' &&
    typeof Reflect.get(value, 'writable') === 'boolean' &&
    typeof Reflect.get(value, 'writableLength') === 'number'
}

interface Held {
  stream: CorkableStream
  bytes: number
}

/**
 * Per-tick write coalescing: a socket's stream is corked at its first write
 * in a tick and uncorked on `process.nextTick`, so all the frames a tick
 * writes to it leave in one `writev` (one syscall instead of one each).
 *
 * It also keeps how many bytes it holds per socket: they sit in
 * `bufferedAmount` until the uncork, yet say nothing about the client, so a
 * writer subtracts them before the slow-consumer rule judges the socket.
 */
export class TickCork {
  readonly #held = new Map<WebSocket, Held>()

  /** Corks the socket's stream unless this tick already did. */
  hold (socket: WebSocket, stream: CorkableStream): void {
    if (this.#held.has(socket)) return
    if (this.#held.size === 0) process.nextTick(this.#release)
    stream.cork()
    this.#held.set(socket, { stream, bytes: 0 })
  }

  /** Records bytes written to a socket held this tick; a socket not held is ignored. */
  count (socket: WebSocket, bytes: number): void {
    const held = this.#held.get(socket)
    if (held !== undefined) held.bytes += bytes
  }

  /** Bytes written to the socket this tick and still corked. */
  heldBytes (socket: WebSocket): number {
    return this.#held.get(socket)?.bytes ?? 0
  }

  isHeld (socket: WebSocket): boolean {
    return this.#held.has(socket)
  }

  /** Uncorks now what the end of the tick would. */
  release (): void {
    this.#release()
  }

  readonly #release = (): void => {
    // Cleared first: an uncork can run 'drain' or error listeners that write again.
    const held = [...this.#held.values()]
    this.#held.clear()
    for (const { stream } of held) stream.uncork()
  }
}

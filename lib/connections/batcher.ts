import type { Connection } from './connection.js'

export interface BatchOptions {
  maxDelayMs: number
  maxMessages: number
}

const OPEN = Buffer.from('{"type":"batch","messages":[')
const COMMA = Buffer.from(',')

/**
 * Per-connection batching for clients that opted in: frames written within
 * `maxDelayMs` (at most `maxMessages`) leave as one `{"type":"batch"}` frame.
 * One timer serves every connection; queues hold already-serialized frames,
 * so batching costs a concatenation, not a re-encode.
 */
export class Batcher {
  readonly #options: BatchOptions
  readonly #flush: (connection: Connection, data: Buffer, frames: number) => void
  readonly #pending = new Set<Connection>()
  #timer: NodeJS.Timeout | null = null

  constructor (options: BatchOptions, flush: (connection: Connection, data: Buffer, frames: number) => void) {
    this.#options = options
    this.#flush = flush
  }

  /** Queues a frame for a batching connection. */
  add (connection: Connection, data: Buffer): void {
    const queue = connection.batch
    if (queue === null) return
    queue.push(data)
    connection.batchBytes += data.length
    if (queue.length >= this.#options.maxMessages) {
      this.flushOne(connection)
      return
    }
    this.#pending.add(connection)
    if (this.#timer === null) {
      this.#timer = setTimeout(() => this.flushAll(), this.#options.maxDelayMs)
    }
  }

  flushAll (): void {
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    for (const connection of this.#pending) this.flushOne(connection)
  }

  flushOne (connection: Connection): void {
    this.#pending.delete(connection)
    const queue = connection.batch
    if (queue === null || queue.length === 0) return
    const parts: Buffer[] = [OPEN]
    for (let i = 0; i < queue.length; i++) {
      if (i > 0) parts.push(COMMA)
      parts.push(queue[i] as Buffer)
    }
    parts.push(Buffer.from(`],"timestamp":"${new Date().toISOString()}"}`))
    const frames = queue.length
    connection.batch = []
    connection.batchBytes = 0
    this.#flush(connection, Buffer.concat(parts), frames)
  }

  /** Drops a connection's queue (it is closing). */
  forget (connection: Connection): void {
    this.#pending.delete(connection)
    if (connection.batch !== null) {
      connection.batch = []
      connection.batchBytes = 0
    }
  }

  stop (): void {
    this.flushAll()
  }
}

import type { Redis } from 'ioredis'
import { parseRead, type StreamBatch } from './replies.js'

export interface ReaderOptions {
  /** The connection this reader blocks on; nothing else is sent on it. */
  connection: Redis
  streams: readonly string[]
  group: string
  consumer: string
  count: number
  blockMs: number
}

/**
 * XREADGROUP for one consumer: first its own pending list (entries it read
 * before and has not acknowledged: from a previous life of this instance
 * id, a reply lost with a dropped connection, entries it claimed), then new
 * entries (`>`) with BLOCK. The pending list is read without BLOCK, from
 * id 0 on, until every stream's part comes back short.
 */
export class StreamReader {
  readonly #options: ReaderOptions
  /** Per stream, the last pending id read; null once reading new entries. */
  #pending: Map<string, string> | null = null
  /** This connection's CLIENT ID, for CLIENT UNBLOCK; false when Redis refuses it (ACL). */
  #clientId: number | null | false = null
  #reading = false

  constructor (options: ReaderOptions) {
    this.#options = options
    this.rewind()
    // A new socket is a new client id.
    options.connection.on('close', () => { if (this.#clientId !== false) this.#clientId = null })
  }

  /** Reads the pending list again before new entries: at start, after a failure, a claim or a new lease. */
  rewind (): void {
    this.#pending = new Map(this.#options.streams.map((stream) => [stream, '0']))
  }

  /** Whether an XREADGROUP is in flight. */
  get reading (): boolean {
    return this.#reading
  }

  async read (): Promise<StreamBatch[]> {
    const { connection, group, consumer, count, blockMs, streams } = this.#options
    if (this.#clientId === null) {
      this.#clientId = await connection.client('ID').then((id) => Number(id), (err: unknown) => {
        // Refused (an ACL without CLIENT): close drops the socket instead. Anything else is the read's failure.
        if (err instanceof Error && err.name === 'ReplyError') return false as const
        throw err
      })
    }
    const pending = this.#pending
    const args: Array<string | number> = ['GROUP', group, consumer, 'COUNT', count]
    if (pending === null) args.push('BLOCK', blockMs, 'STREAMS', ...streams, ...streams.map(() => '>'))
    else args.push('STREAMS', ...pending.keys(), ...pending.values())
    this.#reading = true
    let batches: StreamBatch[]
    try {
      batches = parseRead(await connection.call('XREADGROUP', ...args))
    } finally {
      this.#reading = false
    }
    if (pending !== null) this.#advance(pending, batches)
    return batches
  }

  /**
   * Ends a blocked read now, as if its BLOCK ran out, by CLIENT UNBLOCK on
   * another connection: the read answers nothing and takes nothing, where
   * dropping its socket could lose a reply whose entries Redis already
   * counts as delivered. False when it could not (no client id known, the
   * other connection down, nothing blocked yet): the caller decides.
   */
  async interrupt (commands: Redis): Promise<boolean> {
    const id = this.#clientId
    if (typeof id !== 'number' || commands.status !== 'ready') return false
    const reply = await commands.client('UNBLOCK', id, 'TIMEOUT').catch(() => 0)
    return reply === 1
  }

  #advance (pending: Map<string, string>, batches: readonly StreamBatch[]): void {
    for (const stream of [...pending.keys()]) {
      const batch = batches.find((b) => b.stream === stream)
      // A short answer is the end of this stream's pending list.
      if (batch === undefined || batch.last === null || batch.size < this.#options.count) pending.delete(stream)
      else pending.set(stream, batch.last)
    }
    if (pending.size === 0 && this.#pending === pending) this.#pending = null
  }
}

import type { SourceConsumer, SourceRecord, SourceSink } from '../../lib/sources/source.js'

/**
 * A source backend in memory that keeps the contract: delivers in order,
 * acknowledges the taken prefix, waits for `resumed()` and redelivers the
 * rest. Tests push records and read what was acknowledged.
 */
export class QueueConsumer implements SourceConsumer {
  readonly acked: SourceRecord[] = []
  readonly #queue: SourceRecord[] = []
  #sink: SourceSink | null = null
  #wake: (() => void) | null = null
  #loop: Promise<void> | null = null
  #stopped = false
  closed = false
  deadLettered: Array<{ record: SourceRecord, reason: string }> = []
  deadLetterFails = 0
  withDeadLetter = false
  #seq = 0

  /** A record whose payload is `text` (the default shape is parsed from it). */
  push (...texts: string[]): void {
    for (const text of texts) {
      const offset = this.#seq++
      this.#queue.push({ raw: { text, offset }, coordinates: { queue: 'q', offset }, key: `queue:q:${offset}`, text: () => text })
    }
    this.#wake?.()
  }

  /** A record read again (a redelivery), with its original coordinates and key. */
  pushRecord (record: SourceRecord): void {
    this.#queue.push(record)
    this.#wake?.()
  }

  async start (sink: SourceSink): Promise<void> {
    this.#sink = sink
    sink.connected(true)
    this.#loop = this.#run(sink)
  }

  async #run (sink: SourceSink): Promise<void> {
    while (!this.#stopped && !sink.closing) {
      if (this.#queue.length === 0) {
        await new Promise<void>((resolve) => { this.#wake = resolve })
        this.#wake = null
        continue
      }
      const batch = this.#queue.slice(0, 10)
      const taken = await sink.deliver(batch)
      this.acked.push(...this.#queue.splice(0, taken))
      if (taken < batch.length) await sink.resumed()
    }
  }

  async lag (): Promise<number> {
    return this.#queue.length
  }

  get deadLetter (): SourceConsumer['deadLetter'] {
    if (!this.withDeadLetter) return undefined
    return async (record, reason) => {
      if (this.deadLetterFails > 0) {
        this.deadLetterFails--
        throw new Error('dead-letter destination down')
      }
      this.deadLettered.push({ record, reason })
    }
  }

  async close (): Promise<void> {
    this.#stopped = true
    this.#wake?.()
    await this.#loop
    this.closed = true
    this.#sink?.connected(false)
  }
}

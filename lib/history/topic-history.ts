import type { FastifyBaseLogger } from 'fastify'
import type { Connection } from '../connections/connection.js'
import type { History, HistoryRetention, StreamPosition } from '../cluster/history.js'
import { FailureLog } from '../dispatch/failure-log.js'
import type { OutgoingFrame } from '../protocol/frames.js'
import { frameText, serializeFrame } from '../protocol/serialize.js'
import { TopicStream } from './topic-stream.js'

export interface TopicHistoryOptions {
  history: History
  /** The topic's `history` rule; null when it keeps none. */
  retentionOf: (topic: string) => HistoryRetention | null
  subscribers: (topic: string) => ReadonlySet<Connection>
  write: (connection: Connection, data: Buffer) => boolean
  /** Resolves once the transport carries the topic to this instance. */
  ready: (topic: string) => Promise<void>
  maxRecovery: number
  idempotencyWindowMs: number
  log: FastifyBaseLogger
}

/** A publish that went through the store: what to hand to the transport, if anything. */
export interface Appended {
  /** Local clients written to. */
  recipients: number
  /** The frame text for the other instances; null for a duplicate (they had it the first time). */
  text: string | null
  /** Absent for a topic without history (an idempotency key alone). */
  position?: StreamPosition
}

export interface HistoryPage {
  /** Frame texts, in offset order. */
  publications: string[]
  offset: number
  epoch: string
  /** false: not everything after `since` could be given (older than kept, another epoch, or more than `limit`). */
  complete: boolean
}

/** Idempotency on a topic without history: the store remembers the key, keeps the frame for no time. */
const KEY_ONLY: HistoryRetention = { size: 1, ttlMs: 1 }
export const DEFAULT_HISTORY_LIMIT = 100

/**
 * History on this instance: publishes into history topics (append first,
 * then local delivery of the stored text), orders what arrives per topic
 * (`TopicStream`, one per topic with a local subscriber, dropped with the
 * last), answers subscribes with the position or a recovery, and reads
 * pages for the `history` frame and REST.
 */
export class TopicHistory {
  readonly store: History
  readonly #options: TopicHistoryOptions
  readonly #streams = new Map<string, TopicStream>()
  readonly #failures: FailureLog

  constructor (options: TopicHistoryOptions) {
    this.store = options.history
    this.#options = options
    this.#failures = new FailureLog(options.log, 'ws-hub: the history store failed; ordering waits for it (retried every second)')
  }

  retentionOf (topic: string): HistoryRetention | null {
    return this.#options.retentionOf(topic)
  }

  /** Whether a publish must go through the store: a history topic, or a key to remember. */
  routes (topic: string, idempotencyKey: string | undefined): boolean {
    return idempotencyKey !== undefined || this.#options.retentionOf(topic) !== null
  }

  /** The topic's first local subscriber arrived. */
  opened (topic: string): void {
    const retention = this.#options.retentionOf(topic)
    if (retention === null) return
    const o = this.#options
    this.#streams.set(topic, new TopicStream(topic, {
      history: o.history,
      subscribers: o.subscribers,
      write: o.write,
      ready: o.ready,
      retention,
      failed: (err, failedTopic, what) => this.#failures.record(err, { topic: failedTopic, what })
    }))
  }

  /** Its last local subscriber left: the stream's state goes with it. */
  closed (topic: string): void {
    this.#streams.get(topic)?.drop()
    this.#streams.delete(topic)
  }

  /** A connection subscribed (synchronously, before any later publication): held until told its position. */
  joined (connection: Connection, topic: string): void {
    this.#streams.get(topic)?.hold(connection)
  }

  left (connection: Connection, topic: string): void {
    this.#streams.get(topic)?.forget(connection)
  }

  /** A publication from another instance. */
  receive (topic: string, position: StreamPosition, frame: string): void {
    this.#streams.get(topic)?.offer(position, Buffer.from(frame))
  }

  /**
   * Appends, then writes the stored text to the local subscribers in offset
   * order. A duplicate key is not delivered again and answers the first
   * publish's position. Rejects when the store does: nothing was published.
   */
  async publish (topic: string, frame: OutgoingFrame, idempotencyKey: string | undefined): Promise<Appended> {
    const retention = this.#options.retentionOf(topic)
    const result = await this.store.append({
      topic,
      retention: retention ?? KEY_ONLY,
      frame: retention === null ? () => frameText(frame) : (position) => frameText({ ...frame, offset: position.offset, epoch: position.epoch }),
      ...(idempotencyKey === undefined ? {} : { idempotencyKey }),
      idempotencyWindowMs: this.#options.idempotencyWindowMs
    })
    if (retention === null) {
      if (result.duplicate) return { recipients: 0, text: null }
      return { recipients: this.#deliverPlain(topic, result.frame), text: result.frame }
    }
    const position = { offset: result.offset, epoch: result.epoch }
    if (result.duplicate) return { recipients: 0, text: null, position }
    const stream = this.#streams.get(topic)
    const recipients = stream === undefined ? 0 : stream.offer(position, Buffer.from(result.frame))
    return { recipients, text: result.frame, position }
  }

  #deliverPlain (topic: string, text: string): number {
    const data = Buffer.from(text)
    let recipients = 0
    for (const connection of this.#options.subscribers(topic)) if (this.#options.write(connection, data)) recipients++
    return recipients
  }

  /**
   * Tells a connection that just subscribed where it stands. Without
   * `since`: `subscribed` with the offset it now follows from. With it: the
   * publications after `since`, then `subscribed` with `recovered: true`,
   * then what arrived meanwhile (none twice); or `recovered: false` with the
   * current position and nothing replayed. False when the topic keeps no
   * history (the caller answers the plain way).
   */
  async subscribed (connection: Connection, topic: string, since: StreamPosition | undefined): Promise<boolean> {
    const stream = this.#streams.get(topic)
    if (stream === undefined) return false
    await stream.ready()
    const gone = (): boolean => stream.dropped || !connection.topics.has(topic)
    if (gone()) return true
    let replay: Array<{ offset: number, frame: string }> | null = null
    if (since !== undefined) {
      try {
        const result = await this.store.read(topic, since, this.#options.maxRecovery, stream.retention)
        if (result.ok && result.position.epoch === stream.epoch) replay = result.publications
      } catch (err) {
        // Told recovered: false; the client reloads rather than waiting on a broken store.
        this.#failures.record(err, { topic, what: 'recovery read' })
      }
      if (gone()) return true
    }
    const write = this.#options.write
    if (replay === null || stream.broken(connection)) {
      const position = stream.position
      const frame: OutgoingFrame = { type: 'subscribed', topic, offset: position.offset, epoch: position.epoch }
      if (since !== undefined) frame.recovered = false
      write(connection, serializeFrame(frame))
      stream.release(connection, position.offset, false)
      return true
    }
    let upto = since?.offset ?? 0
    for (const publication of replay) {
      if (publication.offset <= upto) continue
      write(connection, Buffer.from(publication.frame))
      upto = publication.offset
    }
    write(connection, serializeFrame({ type: 'subscribed', topic, offset: upto, epoch: stream.epoch ?? '', recovered: true }))
    stream.release(connection, upto, true)
    return true
  }

  /**
   * A page of a history topic: the publications after `since` (at most
   * `limit`), or without `since` the last `limit` still kept. Null when the
   * topic keeps no history.
   */
  async read (topic: string, since: StreamPosition | undefined, limit: number = DEFAULT_HISTORY_LIMIT): Promise<HistoryPage | null> {
    const retention = this.#options.retentionOf(topic)
    if (retention === null) return null
    if (since !== undefined) {
      const result = await this.store.read(topic, since, limit, retention)
      return result.ok
        ? { publications: result.publications.map((p) => p.frame), ...result.position, complete: true }
        : { publications: [], ...result.position, complete: false }
    }
    const head = await this.store.position(topic)
    // The oldest may have expired: try a shorter tail until the store can give one whole.
    for (let count = Math.min(limit, retention.size, head.offset); ; count = Math.floor(count / 2)) {
      const result = await this.store.read(topic, { offset: head.offset - count, epoch: head.epoch }, count, retention)
      if (result.ok) return { publications: result.publications.map((p) => p.frame), ...result.position, complete: true }
      if (count === 0) return { publications: [], ...result.position, complete: true }
    }
  }
}

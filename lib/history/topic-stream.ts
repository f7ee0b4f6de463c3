import type { Connection } from '../connections/connection.js'
import type { History, HistoryRetention, StreamPosition } from '../cluster/history.js'
import { serializeFrame } from '../protocol/serialize.js'

/** What a stream needs of the hub: its topic's local subscribers and a way to write to them. */
export interface StreamContext {
  history: History
  subscribers: (topic: string) => ReadonlySet<Connection>
  write: (connection: Connection, data: Buffer) => boolean
  /** Resolves once the transport carries the topic to this instance. */
  ready: (topic: string) => Promise<void>
  retention: HistoryRetention
  /** A store call failed; the stream retries it. */
  failed: (err: unknown, topic: string, what: string) => void
}

/**
 * A connection that subscribed and has not been told its position yet:
 * what the stream delivered meanwhile is kept (`held`) until its recovery
 * is written; after that, offsets up to `floor` (already replayed to it)
 * are skipped until the stream passes them.
 */
interface Hold {
  held: Array<[number, Buffer]> | null
  floor: number
  /** The stream was reset while it was held: its recovery cannot be trusted. */
  broken: boolean
}

/** Offsets kept out of order while a gap is filled: beyond that, the gap is given up (subscribers get `reset`). */
const MAX_PENDING = 10_000
const RETRY_MS = 1_000

/**
 * One history topic on one instance, while it has local subscribers: writes
 * its publications to them strictly in offset order, once each. An offset
 * at or below the last delivered is a duplicate and dropped; one beyond the
 * next waits while the missing ones are read from the store (which has
 * every offset before any instance can see it on the transport). When the
 * store cannot give them (expired, or the stream was lost: another epoch),
 * subscribers get `{"type":"reset","topic","offset","epoch"}` and delivery
 * goes on from there: nothing is skipped silently.
 */
export class TopicStream {
  readonly topic: string
  epoch: string | null = null
  /** The last offset written to the subscribers (0 before the first). */
  last = 0
  readonly #context: StreamContext
  /** Offsets of the current epoch beyond `last + 1`, waiting for the gap to close. */
  readonly #pending = new Map<number, Buffer>()
  /** Frames of another epoch than ours (all of them before the first position is known). */
  #foreign: { epoch: string, frames: Map<number, Buffer> } | null = null
  readonly #holds = new Map<Connection, Hold>()
  #busy = false
  #dropped = false
  readonly #ready: Promise<void>
  #resolveReady: () => void = noop

  constructor (topic: string, context: StreamContext) {
    this.topic = topic
    this.#context = context
    this.#ready = new Promise((resolve) => { this.#resolveReady = resolve })
    this.#busy = true
    // The position is read once the transport carries the topic here, so every
    // later offset either arrives, or is read when a later one shows the gap.
    this.#run(async () => {
      await context.ready(topic)
      await this.#sync()
    })
  }

  /** Resolves once the stream knows its position (never rejects; retries the store). */
  async ready (): Promise<void> {
    await this.#ready
  }

  get retention (): HistoryRetention {
    return this.#context.retention
  }

  get position (): StreamPosition {
    return { offset: this.last, epoch: this.epoch ?? '' }
  }

  /** The topic has no local subscriber any more: nothing of it is kept. */
  drop (): void {
    this.#dropped = true
    this.#pending.clear()
    this.#foreign = null
    this.#holds.clear()
    this.#resolveReady()
  }

  get dropped (): boolean {
    return this.#dropped
  }

  /** A publication, local or from another instance. Returns the local clients written to now. */
  offer (position: StreamPosition, data: Buffer): number {
    if (this.#dropped) return 0
    if (position.epoch === this.epoch) {
      if (position.offset <= this.last) return 0
      if (position.offset === this.last + 1 && !this.#busy) return this.#deliver(position.offset, data)
      // Full (the store has been down a while): later offsets are read once it answers.
      if (this.#pending.size < MAX_PENDING) this.#pending.set(position.offset, data)
    } else if (position.offset === 1 && this.last === 0 && this.epoch !== null && !this.#busy) {
      // The first publication of a topic that was empty: it names the epoch (see `#sync`).
      this.epoch = position.epoch
      return this.#deliver(1, data)
    } else {
      if (this.#foreign === null || this.#foreign.epoch !== position.epoch) this.#foreign = { epoch: position.epoch, frames: new Map() }
      if (this.#foreign.frames.size < MAX_PENDING) this.#foreign.frames.set(position.offset, data)
    }
    this.#kick()
    return 0
  }

  /** A connection joined: what arrives is held for it until `release`. */
  hold (connection: Connection): void {
    this.#holds.set(connection, { held: [], floor: 0, broken: false })
  }

  forget (connection: Connection): void {
    this.#holds.delete(connection)
  }

  /** Whether the stream was reset while the connection was held (its recovery is then refused). */
  broken (connection: Connection): boolean {
    return this.#holds.get(connection)?.broken ?? false
  }

  /**
   * The connection was written everything up to `upto`: the held frames
   * after it follow now (`keep: false` drops them: the client was told a
   * position at or past them), and frames up to `upto` are skipped after.
   */
  release (connection: Connection, upto: number, keep: boolean): void {
    const hold = this.#holds.get(connection)
    if (hold === undefined || hold.held === null) return
    if (keep) {
      for (const [offset, data] of hold.held) if (offset > upto) this.#context.write(connection, data)
    }
    if (this.last >= upto) this.#holds.delete(connection)
    else this.#holds.set(connection, { held: null, floor: upto, broken: false })
  }

  #deliver (offset: number, data: Buffer): number {
    this.last = offset
    const holds = this.#holds
    let written = 0
    for (const connection of this.#context.subscribers(this.topic)) {
      const hold = holds.size === 0 ? undefined : holds.get(connection)
      if (hold === undefined) {
        if (this.#context.write(connection, data)) written++
      } else if (hold.held !== null) {
        hold.held.push([offset, data])
      } else {
        if (offset > hold.floor && this.#context.write(connection, data)) written++
        if (offset >= hold.floor) holds.delete(connection)
      }
    }
    return written
  }

  #drain (): void {
    for (let data = this.#pending.get(this.last + 1); data !== undefined; data = this.#pending.get(this.last + 1)) {
      this.#pending.delete(this.last + 1)
      this.#deliver(this.last + 1, data)
    }
  }

  #kick (): void {
    if (this.#busy || this.#dropped) return
    if (this.#pending.size === 0 && this.#foreign === null) return
    this.#busy = true
    this.#run(async () => {
      while (!this.#dropped && (this.#foreign !== null || this.#pending.size > 0)) {
        if (this.#foreign !== null) await this.#sync()
        else {
          this.#drain()
          if (this.#pending.size > 0) await this.#fill()
        }
      }
    })
  }

  #run (work: () => Promise<void>): void {
    work().catch((err: unknown) => {
      this.#context.failed(err, this.topic, 'history read')
      return new Promise<void>((resolve) => setTimeout(resolve, RETRY_MS).unref())
    }).finally(() => {
      this.#busy = false
      if (this.epoch === null && !this.#dropped) {
        // The first position could not be read: try again.
        this.#busy = true
        this.#run(async () => { await this.#sync() })
        return
      }
      this.#kick()
    }).catch(noop)
  }

  /**
   * Reads the store's position: the first one, or after a frame of another
   * epoch. Same epoch as ours: that frame was stale, dropped. A new epoch:
   * the stream was lost, so subscribers are told `reset` and follow the new
   * one from its current offset.
   */
  async #sync (): Promise<void> {
    const position = await this.#context.history.position(this.topic)
    if (this.#dropped) return
    const foreign = this.#foreign
    this.#foreign = null
    if (this.epoch === position.epoch) return
    // An empty topic's epoch is provisional (the store names one when the
    // first publication comes): from offset 0 nothing was lost, so the new
    // epoch is followed from its start, without a reset.
    const fromEmpty = this.epoch !== null && this.last === 0
    const changed = this.epoch !== null && !fromEmpty
    this.epoch = position.epoch
    this.last = fromEmpty ? 0 : position.offset
    this.#pending.clear()
    if (foreign !== null && foreign.epoch === position.epoch) {
      for (const [offset, data] of foreign.frames) if (offset > this.last) this.#pending.set(offset, data)
    }
    if (changed) this.#reset()
    this.#resolveReady()
    this.#drain()
  }

  /** Reads the missing offsets; when the store cannot give them, tells subscribers to `reset`. */
  async #fill (): Promise<void> {
    const epoch = this.epoch ?? ''
    const highest = Math.max(...this.#pending.keys())
    const need = highest - this.last
    const since = this.last
    // The limit is not `need`: publishing goes on while the read is under
    // way, and a store asked for exactly `need` refuses once its head has
    // moved past them. Whatever it returns beyond the gap is delivered now
    // and dropped as a duplicate when its envelope arrives.
    const result = need > MAX_PENDING ? null : await this.#context.history.read(this.topic, { offset: since, epoch }, MAX_PENDING, this.#context.retention)
    if (this.#dropped || this.last !== since) return
    if (result !== null && result.ok) {
      for (const publication of result.publications) {
        if (publication.offset === this.last + 1) this.#deliver(publication.offset, this.#pending.get(publication.offset) ?? Buffer.from(publication.frame))
      }
      for (const offset of this.#pending.keys()) if (offset <= this.last) this.#pending.delete(offset)
      this.#drain()
      if (this.last !== since) return
    } else if (result !== null && result.position.epoch !== epoch) {
      this.#foreign = { epoch: result.position.epoch, frames: new Map() }
      return
    }
    // The store cannot close the gap: start again after it, and say so.
    this.last = Math.min(...this.#pending.keys()) - 1
    this.#reset()
    this.#drain()
  }

  /** Every subscriber learns that offsets were lost before `last`: it reloads its state. */
  #reset (): void {
    const data = serializeFrame({ type: 'reset', topic: this.topic, offset: this.last, epoch: this.epoch ?? '' })
    for (const connection of this.#context.subscribers(this.topic)) {
      const hold = this.#holds.get(connection)
      // One being recovered is answered with its own position later.
      if (hold !== undefined && hold.held !== null) {
        hold.held.length = 0
        hold.broken = true
      } else this.#context.write(connection, data)
    }
  }
}

function noop (): void {}

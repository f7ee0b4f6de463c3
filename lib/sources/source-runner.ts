import type { FastifyBaseLogger } from 'fastify'
import { FailureLog } from '../dispatch/failure-log.js'
import { BadRecord, keyOf, targetsOf } from './targets.js'
import {
  BAD_RECORD_REASONS, type BadRecordReason, type SourceConsumer, type SourceMap, type SourceRecord,
  type SourceSink, type SourceState, type SourceStatus, type SourceTarget
} from './source.js'

/** What a source publishes through: the hub, or a fake in tests. */
export interface SourcePublisher {
  /** Whether publications can be taken now: false while the transport or the registry is down. */
  accepting: () => boolean
  /** Why this target cannot be published (an undeclared namespace, a schema it fails), or null. */
  problem: (target: SourceTarget, idempotencyKey: string | undefined) => BadRecordReason | null
  /** Resolves once every instance could be reached; rejects when not (the record is sent again). */
  publish: (target: SourceTarget, idempotencyKey: string | undefined) => Promise<void>
}

export interface SourceRunnerOptions {
  name: string
  type: string
  consumer: SourceConsumer
  map?: SourceMap<unknown> | undefined
  publisher: SourcePublisher
  log: FastifyBaseLogger
  /** First wait after a failed publish; doubles up to `maxRetryMs`. */
  retryMs?: number
  maxRetryMs?: number
  /** How often lag is read. */
  lagIntervalMs?: number
  /** Bad records are logged at most once per this many ms (with a count of the rest). */
  badRecordLogIntervalMs?: number
}

type Outcome = 'published' | 'filtered' | 'deadLettered' | 'retry' | BadRecordReason

/** The order a target's subscribers see: one line per topic, user, client, or everyone. */
function lineOf (target: SourceTarget): string {
  if ('topic' in target) return `t:${target.topic}`
  if ('userId' in target) return `u:${target.userId}`
  if ('clientId' in target) return `c:${target.clientId}`
  return 'all'
}

const zeroReasons = (): Record<BadRecordReason, number> =>
  Object.fromEntries(BAD_RECORD_REASONS.map((reason) => [reason, 0])) as Record<BadRecordReason, number>

/**
 * Runs one source: maps each record, publishes it through the hub, and
 * tells the backend how many it may acknowledge. A record the hub could not
 * take is not acknowledged: the backend holds it, waits for `resumed()`
 * and delivers it again, so nothing read is dropped.
 */
export class SourceRunner implements SourceSink {
  readonly name: string
  readonly type: string
  readonly #options: SourceRunnerOptions
  readonly #consumer: SourceConsumer
  readonly #badLog: FailureLog
  readonly #retryLog: FailureLog
  readonly #counters = { recordsIn: 0, published: 0, filtered: 0, deadLettered: 0, skipped: zeroReasons() }
  #connected = false
  #refused = false
  #closing = false
  #retryMs: number
  #retryAt = 0
  #lag: number | null = null
  #lagTimer: NodeJS.Timeout | null = null
  readonly #wakers = new Set<() => void>()

  constructor (options: SourceRunnerOptions) {
    this.name = options.name
    this.type = options.type
    this.#options = options
    this.#consumer = options.consumer
    this.#retryMs = options.retryMs ?? 250
    const interval = options.badRecordLogIntervalMs ?? 10_000
    this.#badLog = new FailureLog(options.log, `ws-hub: source ${options.name} skipped a bad record (its coordinates are logged, never its payload)`, interval, 'warn')
    this.#retryLog = new FailureLog(options.log, `ws-hub: source ${options.name} paused: the hub could not take a publication; it is kept and sent again`, interval, 'warn')
  }

  get closing (): boolean {
    return this.#closing
  }

  /** Starts reading; a backend that cannot connect yet keeps trying and reports `down` meanwhile. */
  async start (): Promise<void> {
    const interval = this.#options.lagIntervalMs ?? 5_000
    this.#lagTimer = setInterval(() => { this.#readLag() }, interval).unref()
    try {
      await this.#consumer.start(this)
    } catch (err) {
      this.connected(false, err)
    }
    this.#readLag()
  }

  /** Stops reading and waits for the backend to acknowledge what was delivered and close. */
  async close (): Promise<void> {
    this.#closing = true
    if (this.#lagTimer !== null) clearInterval(this.#lagTimer)
    for (const wake of this.#wakers) wake()
    await this.#consumer.close()
  }

  connected (up: boolean, err?: unknown): void {
    if (!up && this.#connected !== up && !this.#closing) {
      this.#options.log.warn({ err, source: this.name }, `ws-hub: source ${this.name} is down; it reconnects by itself`)
    } else if (up && this.#connected !== up) {
      this.#options.log.info({ source: this.name }, `ws-hub: source ${this.name} is reading`)
    }
    this.#connected = up
  }

  async deliver (records: readonly SourceRecord[]): Promise<number> {
    if (this.#closing || !this.#ready()) {
      this.#refused = true
      return 0
    }
    // Publications to one target go one after another, each once the one
    // before it went through; different targets run side by side. A failed
    // publication stops its target's line, so nothing later to that target
    // gets ahead of the record sent again.
    const lines = new Map<string, Promise<boolean>>()
    const outcomes = await Promise.all(records.map(async (record) => await this.#one(record, lines)))
    let taken = outcomes.indexOf('retry')
    if (taken === -1) taken = outcomes.length
    for (let i = 0; i < taken; i++) this.#count(outcomes[i] as Exclude<Outcome, 'retry'>)
    if (taken < outcomes.length) {
      this.#refused = true
      this.#retryAt = Date.now() + this.#retryMs
      this.#retryMs = Math.min(this.#retryMs * 2, this.#options.maxRetryMs ?? 5_000)
    } else {
      this.#refused = false
      this.#retryMs = this.#options.retryMs ?? 250
    }
    return taken
  }

  resumed (): Promise<void> {
    if (this.#closing || this.#ready()) return Promise.resolve()
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | null = null
      const wake = (): void => {
        if (timer !== null) clearTimeout(timer)
        this.#wakers.delete(wake)
        resolve()
      }
      const check = (): void => {
        if (this.#closing || this.#ready()) wake()
        else timer = setTimeout(check, Math.max(50, Math.min(this.#retryMs, this.#retryAt - Date.now())))
      }
      this.#wakers.add(wake)
      check()
    })
  }

  status (): SourceStatus {
    const c = this.#counters
    return {
      name: this.name,
      type: this.type,
      state: this.state(),
      active: this.#consumer.active?.() ?? true,
      recordsIn: c.recordsIn,
      published: c.published,
      filtered: c.filtered,
      skipped: { ...c.skipped },
      deadLettered: c.deadLettered,
      lag: this.#lag
    }
  }

  state (): SourceState {
    if (!this.#connected) return 'down'
    if (this.#refused || !this.#options.publisher.accepting()) return 'paused'
    return 'up'
  }

  /** The hub takes publications, and the backoff after a failed one has passed. */
  #ready (): boolean {
    return Date.now() >= this.#retryAt && this.#options.publisher.accepting()
  }

  async #one (record: SourceRecord, lines: Map<string, Promise<boolean>>): Promise<Outcome> {
    const publisher = this.#options.publisher
    let targets: SourceTarget[]
    let keys: Array<string | undefined>
    try {
      targets = targetsOf(record, this.#options.map)
      keys = targets.map((target, i) => keyOf(record, target, i, targets.length))
      // Every target is checked before any goes out: a bad record publishes nothing.
      targets.forEach((target, i) => {
        const problem = publisher.problem(target, keys[i])
        if (problem !== null) throw new BadRecord(problem, `the hub refused target ${i}`)
      })
    } catch (err) {
      if (!(err instanceof BadRecord)) throw err
      return await this.#bad(record, err)
    }
    if (targets.length === 0) return 'filtered'
    const sent = targets.map((target, i) => {
      const line = lineOf(target)
      const before = lines.get(line) ?? Promise.resolve(true)
      const after = before.then(async (ok) => {
        if (!ok) return false
        try {
          await publisher.publish(target, keys[i])
          return true
        } catch (err) {
          this.#retryLog.record(err, { source: this.name, coordinates: record.coordinates })
          return false
        }
      })
      lines.set(line, after)
      return after
    })
    return (await Promise.all(sent)).every(Boolean) ? 'published' : 'retry'
  }

  async #bad (record: SourceRecord, err: BadRecord): Promise<Outcome> {
    // The cause may quote the payload (V8's JSON errors do): only a map's own message is logged.
    const detail = err.reason === 'map_failed' && err.cause instanceof Error ? err.cause.message.slice(0, 200) : err.message
    this.#badLog.record(undefined, { source: this.name, reason: err.reason, detail, coordinates: record.coordinates })
    const deadLetter = this.#consumer.deadLetter
    if (deadLetter === undefined) return err.reason
    try {
      await deadLetter.call(this.#consumer, record, err.reason)
      return 'deadLettered'
    } catch (failure) {
      // The user asked for bad records to be kept: hold the source rather than drop one.
      this.#retryLog.record(failure, { source: this.name, coordinates: record.coordinates, deadLetter: true })
      return 'retry'
    }
  }

  #count (outcome: Exclude<Outcome, 'retry'>): void {
    const c = this.#counters
    c.recordsIn++
    if (outcome === 'published') c.published++
    else if (outcome === 'filtered') c.filtered++
    else if (outcome === 'deadLettered') c.deadLettered++
    else c.skipped[outcome]++
  }

  #readLag (): void {
    if (this.#closing) return
    this.#consumer.lag().then((lag) => { this.#lag = lag }, () => { this.#lag = null })
  }
}

import pg from 'pg'
import { setTimeout as sleep } from 'node:timers/promises'
import type { PostgresOutboxSourceConfig } from '../../options/source-options.js'
import { backoffDelay } from '../../client/backoff.js'
import type { OutboxRow } from '../records.js'
import type { BadRecordReason, SourceConsumer, SourceContext, SourceRecord, SourceSink } from '../source.js'
import { OutboxListener } from './outbox-listener.js'
import { OutboxLock } from './outbox-lock.js'
import { lockKey } from './outbox-names.js'
import { outboxRecord } from './outbox-record.js'
import { outboxSql, type OutboxSql } from './outbox-sql.js'
import { inTransaction, withClient } from './pool-client.js'
import { Doorbell } from './doorbell.js'

/** After a failed claim: quick at first, at most 5 s apart, until it works or the source closes. */
const RETRY = { initialDelayMs: 100, maxDelayMs: 5_000, factor: 2, jitter: 0.5 }
/** How often an instance that does not hold an ordered source's lock tries to take it. */
const LOCK_RETRY_MS = 1_000

/**
 * Reads a transactional outbox: the application inserts rows in its own
 * transaction, and the hub delivers them once committed, at least once.
 *
 * Each claim is one transaction: lock the oldest rows still to read
 * (`FOR UPDATE SKIP LOCKED`, so instances claim side by side without
 * reading a row twice), hand them to the sink, and in the same
 * transaction acknowledge the ones it took (delete or mark them) and
 * write the reason of the ones it dead-lettered. The rest stay, unlocked
 * at commit. A crash before the commit leaves every row of the claim to
 * be read again.
 *
 * With `ordered`, one instance at a time reads (an advisory lock), so rows
 * go out in id order. What that cannot order: ids are taken at INSERT and
 * rows become visible at COMMIT, so a transaction that took id 5 and
 * commits after the one that took id 6 is read after 6 (6 was read while
 * 5 was still invisible). Order holds between rows committed in order,
 * which is what one producer's rows, or one transaction's, are.
 */
export class PostgresOutboxSource implements SourceConsumer {
  readonly #config: PostgresOutboxSourceConfig
  readonly #context: SourceContext
  readonly #sql: OutboxSql
  readonly #doorbell = new Doorbell()
  /** Aborts every wait of the claim loop when the source closes. */
  readonly #stop = new AbortController()
  #pool: pg.Pool | null = null
  #listener: OutboxListener | null = null
  #lock: OutboxLock | null = null
  #loop: Promise<void> | null = null
  #closed: Promise<void> | null = null
  /**
   * After the hub refused part of a claim, the next claim takes one row.
   * The runner publishes a delivery's records together, so to a hub that
   * fails again (it just came back) a batch would lose its first rows and
   * publish later ones, which would go out before the first ones sent
   * again. One row at a time until one goes through keeps the order.
   */
  #probing = false
  /** The reasons of the claim in flight's dead-lettered rows, by id; written at its commit. */
  #deadLetters = new Map<string, BadRecordReason>()
  /** Present only with a dead-letter column: without it, the runner skips bad rows (they are acknowledged). */
  readonly deadLetter: ((record: SourceRecord, reason: BadRecordReason) => Promise<void>) | undefined

  constructor (config: PostgresOutboxSourceConfig, context: SourceContext) {
    this.#config = config
    this.#context = context
    this.#sql = outboxSql(config)
    this.deadLetter = config.deadLetter === undefined ? undefined : async (record, reason) => { this.#deadLetter(record, reason) }
  }

  async start (sink: SourceSink): Promise<void> {
    if (this.#loop !== null || this.#stop.signal.aborted) return
    const pool = new pg.Pool({
      connectionString: this.#config.connectionString,
      application_name: `ws-hub ${this.#context.name} ${this.#context.instanceId}`.slice(0, 63),
      // A claim, the LISTEN session, the lock's session and a lag count at once.
      max: 4,
      // A host that does not answer fails the attempt instead of hanging the loop.
      connectionTimeoutMillis: 10_000,
      // A peer gone without a word (a network cut) is noticed, and with it a held lock.
      keepAlive: true
    })
    // An idle pooled connection that failed is dropped by the pool. The
    // loop checks the database at once, and reports it down if it is: a
    // proxy closing an idle connection is no outage, so not reported here.
    pool.on('error', () => { this.#doorbell.ring() })
    this.#pool = pool
    this.#listener = new OutboxListener(pool, this.#sql, () => { this.#doorbell.ring() }, this.#context.log)
    if (this.#config.ordered) {
      this.#lock = new OutboxLock(pool, lockKey(this.#config.table), (err) => {
        this.#context.log.warn({ err }, 'ws-hub: outbox source lost its ordered lock with its connection; it stops reading and tries to take it again')
        this.#doorbell.ring()
      })
    }
    let first: () => void = () => {}
    const started = new Promise<void>((resolve) => { first = resolve })
    // The first claim need not wait for LISTEN: once listening, the
    // listener rings, and the claim that follows reads what was committed
    // before it listened.
    const listening = this.#listener.start()
    this.#loop = this.#run(sink, first)
    await Promise.all([listening, started])
  }

  async lag (): Promise<number | null> {
    if (this.#pool === null) return null
    const { rows } = await this.#pool.query<{ n: string }>(this.#sql.lag)
    return Number(rows[0]?.n ?? 0)
  }

  active (): boolean {
    return this.#lock === null ? true : this.#lock.held()
  }

  /** Idempotent: stops the loop, lets a claim in flight commit, then closes what `start` opened, last opened first. */
  async close (): Promise<void> {
    this.#closed ??= this.#shutdown()
    await this.#closed
  }

  async #shutdown (): Promise<void> {
    this.#stop.abort()
    this.#doorbell.ring()
    await this.#loop
    await this.#lock?.release()
    await this.#listener?.close()
    await this.#pool?.end()
  }

  /** Claims until closed; `first` is called once the first attempt is over, whatever its outcome. */
  async #run (sink: SourceSink, first: () => void): Promise<void> {
    let failures = 0
    const stopped = (): boolean => this.#stop.signal.aborted || sink.closing
    while (!stopped()) {
      let next: 'now' | 'resumed' | 'wait' | 'lock'
      try {
        next = await this.#claim(sink)
        sink.connected(true)
        failures = 0
      } catch (err) {
        this.#lock?.drop()
        sink.connected(false, err)
        failures++
        first()
        await this.#pause(backoffDelay(failures, RETRY))
        continue
      }
      first()
      if (next === 'resumed') await this.#resumed(sink)
      else if (next === 'lock') await this.#pause(LOCK_RETRY_MS)
      else if (next === 'wait') await this.#doorbell.wait(this.#config.pollIntervalMs, this.#stop.signal)
    }
  }

  /** One claim; says what the loop does next. */
  async #claim (sink: SourceSink): Promise<'now' | 'resumed' | 'wait' | 'lock'> {
    // A notification from here on may be for a row this claim does not see.
    this.#doorbell.clear()
    if (this.#lock !== null) {
      const session = await this.#lock.session()
      if (session === null) return 'lock'
      return await this.#claimOn(session, sink)
    }
    return await withClient(this.#pool as pg.Pool, async (client) => await this.#claimOn(client, sink))
  }

  async #claimOn (client: pg.ClientBase, sink: SourceSink): Promise<'now' | 'resumed' | 'wait'> {
    const limit = this.#probing ? 1 : this.#config.batchSize
    return await inTransaction(client, async () => {
      const { rows } = await client.query<OutboxRow>(this.#sql.claim, [limit])
      if (rows.length === 0) return 'wait'
      this.#deadLetters = new Map()
      const taken = await sink.deliver(rows.map((row) => outboxRecord(this.#config.table, row)))
      const acknowledged: string[] = []
      const failed: string[] = []
      const reasons: string[] = []
      for (const row of rows.slice(0, taken)) {
        const reason = this.#deadLetters.get(row.id)
        if (reason === undefined) {
          acknowledged.push(row.id)
        } else {
          failed.push(row.id)
          reasons.push(reason)
        }
      }
      this.#deadLetters = new Map()
      if (failed.length > 0) await client.query(this.#sql.deadLettered, [failed, reasons])
      if (acknowledged.length > 0) await client.query(this.#sql.delivered, [acknowledged])
      // The hub took fewer than all: what it did not take stays, unlocked at commit, until it takes publications again.
      this.#probing = taken < rows.length
      if (this.#probing) return 'resumed'
      // A full batch: more are likely waiting (and after a probe, the batch it held back).
      return rows.length === limit ? 'now' : 'wait'
    })
  }

  /**
   * The runner calls this within `deliver` for a bad row. The reason is
   * written in the claim's own transaction, where the row is locked: a
   * second session would wait for that lock, and the claim for it.
   */
  #deadLetter (record: SourceRecord, reason: BadRecordReason): void {
    this.#deadLetters.set(String(record.coordinates.id), reason)
  }

  /** The sink's `resumed`, or this source's close, whichever comes first. */
  async #resumed (sink: SourceSink): Promise<void> {
    const signal = this.#stop.signal
    if (signal.aborted) return
    let stop: () => void = () => {}
    const stopped = new Promise<void>((resolve) => { stop = resolve })
    signal.addEventListener('abort', stop, { once: true })
    try {
      await Promise.race([sink.resumed(), stopped])
    } finally {
      signal.removeEventListener('abort', stop)
    }
  }

  async #pause (ms: number): Promise<void> {
    await sleep(ms, undefined, { signal: this.#stop.signal, ref: false }).catch(() => {})
  }
}

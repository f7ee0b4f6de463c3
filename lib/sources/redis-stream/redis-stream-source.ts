import { setTimeout as sleep } from 'node:timers/promises'
import type { Redis } from 'ioredis'
import { CLOSE_TIMEOUT_MS, closeConnection, openConnection, reconnectDelay, type SingleRedisSource } from '../../cluster/redis/connect.js'
import { FailureLog } from '../../dispatch/failure-log.js'
import type { RedisStreamSourceConfig } from '../../options/source-options.js'
import { RedisLease } from '../leases/redis-lease.js'
import type { BadRecordReason, SourceConsumer, SourceContext, SourceRecord, SourceSink } from '../source.js'
import { Claimer } from './claimer.js'
import { openReader, whenReady } from './connections.js'
import { pause } from '../pause.js'
import { SourceError } from '../../errors.js'
import { acknowledge, createGroups, defineGroupScripts, groupLag, isNoGroup } from './group.js'
import { StreamReader } from './reader.js'
import type { StreamBatch } from './replies.js'
import { toRecord, type ReadEntry } from './stream-record.js'

/** A dead-letter stream keeps about this many entries (MAXLEN ~, which trims whole nodes: cheap). */
export const DEAD_LETTER_MAXLEN = 100_000

/** The key of an `ordered` source's lease: one per group and set of streams, whatever order they are listed in. */
export const leaseKey = (group: string, streams: readonly string[]): string =>
  `ws-hub:source:lease:${group}:${[...streams].sort().join(',')}`

/** An entry on its way to the hub: as read (for a dead letter and the XACK) and as the runner gets it. */
interface Delivering {
  read: ReadEntry
  record: SourceRecord
}

/** Everything `start` opens; `close` closes it in the order opened. */
interface Opened {
  commands: Redis
  connection: Redis
  reader: StreamReader
  lease: RedisLease | null
}

/**
 * Redis Streams through a consumer group: each entry goes to one hub
 * instance (the group's consumer named by the instance id), is delivered
 * to the hub, and is acknowledged (XACK) once the hub took it. An instance
 * reads its own pending entries first (what it read in a previous life and
 * did not acknowledge), then new ones. Entries a dead instance left pending
 * are claimed by the others after `claimIdleMs` (see `Claimer`). Delivery
 * is at least once; an entry read twice carries the same idempotency key.
 *
 * Two connections: one blocks in XREADGROUP and carries nothing else; the
 * other runs everything else (XACK, XAUTOCLAIM, XINFO, dead letters, the
 * lease). Both are opened from `url`, or duplicated from `client`, and
 * closed by the source; the user's client is never used or closed.
 *
 * `ordered`: only the holder of a lease in the same Redis reads, so entries
 * go out in stream order across instances. A new holder first claims every
 * entry pending for any consumer, however recent: with one reader at a
 * time those were read by an earlier holder that has stopped, so they are
 * the oldest not yet acknowledged, and they go out first. An earlier holder
 * that lost its lease stops reading at once; a read it had in flight that
 * Redis answered anyway leaves entries in its pending list that the new
 * holder claims only after `claimIdleMs`, out of order: that takes a holder
 * stalled past its lease, in the instant it loses it.
 */
export class RedisStreamSource implements SourceConsumer {
  readonly deadLetter?: (record: SourceRecord, reason: BadRecordReason) => Promise<void>
  readonly #config: RedisStreamSourceConfig
  readonly #context: SourceContext
  readonly #stop = new AbortController()
  readonly #claimer: Claimer
  readonly #failures: FailureLog
  /** What a dead letter copies: the entry's fields as read. */
  readonly #reads = new WeakMap<SourceRecord, ReadEntry>()
  #opened: Opened | null = null
  #sink: SourceSink | null = null
  #loop: Promise<void> = Promise.resolve()
  #claiming: Promise<void> = Promise.resolve()
  #claimTimer: NodeJS.Timeout | null = null
  #claimBusy = false
  #groupsReady = false
  /** The lease is held and the hand-over claimed: this instance may read. */
  #holding = false
  #up = false
  #lastError: unknown
  #closing: Promise<void> | null = null

  constructor (config: RedisStreamSourceConfig, context: SourceContext) {
    this.#config = config
    this.#context = context
    this.#claimer = new Claimer({
      streams: config.streams,
      group: config.group,
      consumer: context.instanceId,
      claimIdleMs: config.claimIdleMs,
      count: config.count
    })
    const deadLetterStream = config.deadLetter?.stream
    if (deadLetterStream !== undefined) this.deadLetter = async (record, reason) => { await this.#deadLetter(deadLetterStream, record, reason) }
    this.#failures = new FailureLog(context.log, `ws-hub: source ${context.name} could not claim entries left by other instances; retrying`, 10_000, 'warn')
  }

  async start (sink: SourceSink): Promise<void> {
    if (this.#sink !== null || this.#closing !== null) throw new SourceError(`source ${this.#context.name}: start called twice, or after close`)
    this.#sink = sink
    const opened = this.#open()
    try {
      await Promise.all([opened.commands.connect(), opened.connection.connect()])
      await this.#createGroups(opened.commands)
      this.#connected(true)
    } catch (err) {
      // ioredis goes on reconnecting by itself; the loop waits for it.
      this.#connected(false, err)
    }
    // Closed while connecting: close already closed the connections and waits for nothing more.
    if (this.#stop.signal.aborted) return
    this.#loop = this.#run(opened, sink)
    // Half the idle time: an entry is claimed between claimIdleMs and 1.5 × claimIdleMs after its reader stopped.
    this.#claimTimer = setInterval(() => { this.#claimRound(opened) }, Math.max(50, Math.floor(this.#config.claimIdleMs / 2))).unref()
  }

  /**
   * With `deadLetter.stream`: a bad entry is added there (its fields as
   * read, then `ws-hub-reason`, `ws-hub-source-stream`, `ws-hub-source-id`)
   * and then acknowledged like any other. MAXLEN ~ keeps that stream near
   * DEAD_LETTER_MAXLEN entries, so a flood of bad entries cannot fill Redis.
   */
  async #deadLetter (stream: string, record: SourceRecord, reason: BadRecordReason): Promise<void> {
    const read = this.#reads.get(record)
    const commands = this.#opened?.commands
    if (read === undefined || commands === undefined) throw new SourceError(`source ${this.#context.name}: a dead letter for a record it did not read`)
    await commands.call('XADD', stream, 'MAXLEN', '~', DEAD_LETTER_MAXLEN, '*', ...read.pairs,
      'ws-hub-reason', reason, 'ws-hub-source-stream', read.entry.stream, 'ws-hub-source-id', read.entry.id)
  }

  async lag (): Promise<number | null> {
    const commands = this.#opened?.commands
    if (commands === undefined || commands.status !== 'ready') return null
    return await groupLag(commands, this.#config.streams, this.#config.group)
  }

  active (): boolean {
    const lease = this.#opened?.lease ?? null
    return this.#opened !== null && this.#closing === null && (lease === null || (this.#holding && lease.held()))
  }

  /** Stops reading, lets a delivery in flight finish and be acknowledged, gives the lease up, closes both connections. */
  async close (): Promise<void> {
    this.#closing ??= this.#close()
    await this.#closing
  }

  #open (): Opened {
    const config = this.#config
    const context = this.#context
    const source: SingleRedisSource = config.client !== undefined ? { client: config.client } : { url: config.url }
    const commands = openConnection(source, `ws-hub:source:${context.name}:${context.instanceId}`)
    defineGroupScripts(commands)
    const connection = openReader(source, `ws-hub:source:${context.name}:reader:${context.instanceId}`, config.blockMs)
    for (const client of [commands, connection]) {
      // Without an 'error' listener ioredis prints every failed reconnect; the error is reported with the outage.
      client.on('error', (err: unknown) => { this.#lastError = err })
      client.on('close', () => { this.#connected(false, this.#lastError) })
    }
    const reader = new StreamReader({ connection, streams: config.streams, group: config.group, consumer: context.instanceId, count: config.count, blockMs: config.blockMs })
    let lease: RedisLease | null = null
    if (config.ordered) {
      lease = new RedisLease({ client: commands, key: leaseKey(config.group, config.streams), holder: context.instanceId, ttlMs: config.leaseMs, log: context.log })
      lease.onLost(() => { this.#leaseLost() })
    }
    this.#opened = { commands, connection, reader, lease }
    return this.#opened
  }

  async #run (opened: Opened, sink: SourceSink): Promise<void> {
    let failures = 0
    while (!this.#stopped(sink)) {
      try {
        await this.#step(opened, sink)
        failures = 0
      } catch (err) {
        if (this.#stopped(sink)) return
        failures++
        this.#failed(opened, err)
        // Bounded: from 100 ms doubling to 2 s, then every 2 s until close.
        await pause(reconnectDelay(failures), this.#stop.signal)
      }
    }
  }

  async #step (opened: Opened, sink: SourceSink): Promise<void> {
    const { commands, connection, reader, lease } = opened
    await whenReady(commands, this.#stop.signal)
    await whenReady(connection, this.#stop.signal)
    if (this.#stopped(sink)) return
    if (!this.#groupsReady) await this.#createGroups(commands)
    this.#connected(true)
    if (lease !== null && !(this.#holding && lease.held())) {
      await this.#takeOver(opened, lease)
      return
    }
    const batches = await reader.read()
    // Read after the lease was lost: these stay pending, for the new holder to claim.
    if (lease !== null && !this.#holding) return
    await this.#deliver(opened, sink, batches)
  }

  async #takeOver (opened: Opened, lease: RedisLease): Promise<void> {
    this.#holding = false
    if (!lease.held() && !await lease.acquire(this.#stop.signal)) return
    const claimed = await this.#claimer.takeAll(opened.commands)
    if (claimed > 0) this.#context.log.info({ source: this.#context.name, claimed }, `ws-hub: source ${this.#context.name} took the lease and the ${claimed} entries its last holder left unacknowledged`)
    opened.reader.rewind()
    this.#holding = lease.held()
  }

  /**
   * Delivers what one read returned and acknowledges exactly what the hub
   * took. The rest is held here, in order, until the hub takes
   * publications again, and delivered again; on close (or a lost lease) it
   * is left pending in Redis, read again by this instance id or claimed by
   * another instance.
   */
  async #deliver (opened: Opened, sink: SourceSink, batches: readonly StreamBatch[]): Promise<void> {
    await this.#dropGone(opened.commands, batches)
    let rest: Delivering[] = batches.flatMap((batch) => batch.entries).map((read) => {
      const record = toRecord(read)
      this.#reads.set(record, read)
      return { read, record }
    })
    // After a refusal the first entry goes alone. The runner publishes a
    // delivery's records together, so to a hub that fails again (it just
    // came back) a batch would lose its first entries and publish later
    // ones: those would go out before the ones sent again.
    let probing = false
    while (rest.length > 0) {
      const chunk: Delivering[] = probing ? rest.slice(0, 1) : rest
      let taken: number
      try {
        taken = await sink.deliver(chunk.map((item) => item.record))
      } catch (err) {
        throw new DeliveryFailed(`source ${this.#context.name}: delivering ${chunk.length} entries failed; they stay pending and are read again`, { cause: err })
      }
      await acknowledge(opened.commands, this.#config.group, idsByStream(rest.slice(0, taken).map((item) => item.read)))
      rest = rest.slice(taken)
      if (rest.length === 0 || this.#stopped(sink) || (opened.lease !== null && !this.#holding)) return
      probing = taken < chunk.length
      if (probing) await sink.resumed()
    }
  }

  /** Pending ids whose entries were trimmed away cannot be delivered: acknowledged, so they leave the pending list, and reported. */
  async #dropGone (commands: Redis, batches: readonly StreamBatch[]): Promise<void> {
    const gone = new Map(batches.filter((batch) => batch.gone.length > 0).map((batch) => [batch.stream, batch.gone]))
    if (gone.size === 0) return
    const count = [...gone.values()].reduce((sum, ids) => sum + ids.length, 0)
    this.#context.log.warn({ source: this.#context.name, count, streams: [...gone.keys()] },
      `ws-hub: source ${this.#context.name}: ${count} pending entries were trimmed from their stream before they were published; they are lost`)
    await acknowledge(commands, this.#config.group, gone)
  }

  async #createGroups (commands: Redis): Promise<void> {
    await createGroups(commands, this.#config.streams, this.#config.group, this.#config.from)
    this.#groupsReady = true
  }

  #failed (opened: Opened, err: unknown): void {
    opened.reader.rewind()
    if (err instanceof DeliveryFailed) {
      this.#context.log.error({ err, source: this.#context.name }, err.message)
      return
    }
    // A stream deleted (or a Redis restarted empty) takes the group with it: create it again,
    // per `from` (with `latest`, entries added before that are not read).
    if (isNoGroup(err)) this.#groupsReady = false
    // No reply within BLOCK plus the command timeout: a hung server; a new socket finds out.
    if (err instanceof Error && err.message === 'Command timed out') opened.connection.disconnect(true)
    this.#connected(false, err)
  }

  #claimRound (opened: Opened): void {
    const lease = opened.lease
    // One round at a time: a slow Redis must not pile rounds up behind each other.
    if (this.#claimBusy || this.#stop.signal.aborted || opened.commands.status !== 'ready' || (lease !== null && !this.#holding)) return
    this.#claimBusy = true
    this.#claiming = this.#claiming.then(async () => {
      try {
        if (await this.#claimer.round(opened.commands) === 0) return
        // Claimed entries are in this consumer's pending list: read them now rather than after the BLOCK.
        opened.reader.rewind()
        await opened.reader.interrupt(opened.commands)
      } catch (err) {
        this.#failures.record(err, { source: this.#context.name })
      } finally {
        this.#claimBusy = false
      }
    })
  }

  #leaseLost (): void {
    this.#holding = false
    const opened = this.#opened
    if (opened === null) return
    this.#context.log.warn({ source: this.#context.name }, `ws-hub: source ${this.#context.name} lost its lease; another instance reads on`)
    // Stop reading at once: end a blocked read, or failing that drop its socket.
    opened.reader.interrupt(opened.commands).then((cut) => {
      if (!cut && opened.reader.reading) opened.connection.disconnect(true)
    }, () => {})
  }

  async #close (): Promise<void> {
    this.#stop.abort()
    if (this.#claimTimer !== null) clearInterval(this.#claimTimer)
    const opened = this.#opened
    if (opened === null) return
    await this.#endLoop(opened)
    await this.#claiming
    this.#holding = false
    if (opened.lease !== null) {
      await opened.lease.release().catch((err: unknown) => {
        this.#context.log.warn({ err, source: this.#context.name }, `ws-hub: source ${this.#context.name} could not release its lease; it expires by itself`)
      })
    }
    await closeConnection(opened.commands)
    await closeConnection(opened.connection)
  }

  /**
   * Waits for the loop to stop: a delivery in flight finishes and is
   * acknowledged, however long the hub takes. A blocked read is ended with
   * CLIENT UNBLOCK, tried again until it lands (the read may not have
   * reached Redis yet); when that cannot work (ACL, the other connection
   * down) or has not within CLOSE_TIMEOUT_MS, the read's socket is dropped.
   */
  async #endLoop (opened: Opened): Promise<void> {
    const stopped = { now: false }
    const loop = this.#loop.then(() => { stopped.now = true })
    const deadline = Date.now() + CLOSE_TIMEOUT_MS
    while (!stopped.now) {
      if (opened.reader.reading && !await opened.reader.interrupt(opened.commands) && Date.now() >= deadline) {
        opened.connection.disconnect()
      }
      await Promise.race([loop, sleep(20)])
    }
  }

  #stopped (sink: SourceSink): boolean {
    return this.#stop.signal.aborted || sink.closing
  }

  #connected (up: boolean, err?: unknown): void {
    if (this.#up === up || this.#sink === null) return
    this.#up = up
    this.#sink.connected(up, err)
  }
}

/** `sink.deliver` threw: not a Redis failure, so the source is not reported down. */
class DeliveryFailed extends SourceError {}

function idsByStream (reads: readonly ReadEntry[]): Map<string, string[]> {
  const out = new Map<string, string[]>()
  for (const { entry } of reads) {
    const ids = out.get(entry.stream)
    if (ids === undefined) out.set(entry.stream, [entry.id])
    else ids.push(entry.id)
  }
  return out
}

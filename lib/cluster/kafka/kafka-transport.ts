import { randomUUID } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import {
  CompressionTypes,
  Kafka,
  logLevel,
  Partitioners,
  type Admin,
  type Consumer,
  type ConsumerCrashEvent,
  type ConsumerGroupJoinEvent,
  type EachBatchPayload,
  type IHeaders,
  type KafkaMessage,
  type LogEntry,
  type Message,
  type Producer
} from 'kafkajs'
import { decodeEnvelope, encodeEnvelope, type Envelope } from '../envelope.js'
import type { KafkaBrokerOptions } from '../../options/hub-options.js'
import { normalizeKafkaOptions, type KafkaConfig } from './kafka-options.js'
export { KAFKA_DEFAULTS } from './kafka-options.js'
import { addressedTo, header, RecentIds } from './kafka-records.js'
import type { Broker, BrokerState, EnvelopeHandler, PublishOptions } from '../transport.js'

// A sender has one request in flight at a time, of at most these many
// records or bytes. Kafka refuses a record batch above max.message.bytes
// (1 MiB by default), and a request to one partition is one batch.
const MAX_REQUEST_RECORDS = 500
const MAX_REQUEST_BYTES = 512 * 1024

// A consumer that has had no fetch answered for this long, or a publish that
// failed this recently, makes state() 'down'. Idle fetches return every
// maxWaitTimeInMs, so silence this long means Kafka is unreachable.
const STALL_MS = 5_000
const CHECK_INTERVAL_MS = 250

// Our own consumer restarts (kafkajs is told never to restart by itself, so
// retriable and fatal crashes take one path). Reset after every group join.
const RESTART_BASE_MS = 250
const RESTART_MAX_MS = 5_000

// Each close step (consumer, producer, group deletion) gets this long, so a
// dead cluster cannot hang fastify.close().
const CLOSE_STEP_MS = 5_000

const TO_HEADER = 'ws-hub-to'
const ID_HEADER = 'ws-hub-id'

// Records the broker refused for what they are: these say nothing about the
// cluster's health, so they do not turn state() 'down'.
const RECORD_ERRORS = new Set(['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE', 'INVALID_RECORD', 'CORRUPT_MESSAGE'])

export class KafkaBrokerError extends Error {
  override name = 'KafkaBrokerError'
}

export interface KafkaBrokerCounters {
  /** Envelopes Kafka acknowledged. */
  published: number
  /** Publishes rejected at once because `maxPendingPublishes` were waiting. */
  publishOverflows: number
  /** Publishes that failed or timed out. */
  publishFailures: number
  /** Envelopes handed to the handler. */
  delivered: number
  /** Records dropped because this instance had already seen them. */
  duplicates: number
  /** Records on the topic that are not envelopes. */
  invalid: number
}

interface Outgoing {
  message: Message
  bytes: number
  resolve: () => void
  reject: (err: Error) => void
  timer: NodeJS.Timeout
  /** Resolved, rejected or expired: later outcomes are ignored. */
  done: boolean
}

/**
 * Broker over one Kafka topic. Every instance consumes every record through
 * its own consumer group and drops what is its own or addressed to others.
 *
 * Delivery is at most once and never duplicated: the consumer keeps its
 * position in memory and seeks back to it whenever it rejoins its group, and
 * records carry a sender sequence number so a producer retry that Kafka wrote
 * twice is handed over once.
 *
 * Latency tuning: acks 1 by default (see `acks`). No linger: an idle broker
 * sends a publish at once; publishes made while a request is in flight go
 * together in the next one, so batching grows with load only. No
 * compression: frames are small and compressing costs CPU on every hop.
 * Consumer `minBytes` 1, so a fetch returns as soon as one record exists.
 * Publishes from one instance arrive in the order publish() was called.
 */
export class KafkaBroker implements Broker {
  readonly counters: KafkaBrokerCounters = { published: 0, publishOverflows: 0, publishFailures: 0, delivered: 0, duplicates: 0, invalid: 0 }
  readonly #config: KafkaConfig
  readonly #log: FastifyBaseLogger
  readonly #kafka: Kafka
  readonly #sender = randomUUID()
  #seq = 0
  #instanceId = ''
  #groupId = ''
  #handler: EnvelopeHandler | null = null
  #producer: Producer | null = null
  #consumer: Consumer | null = null
  /** Publishes not yet handed to kafkajs, in call order. */
  readonly #queue: Outgoing[] = []
  /** Publishes in the request kafkajs is sending (one request at a time). */
  #inFlight: Outgoing[] = []
  /** Next offset to deliver, per partition; where a rejoining consumer seeks. */
  readonly #position = new Map<number, bigint>()
  readonly #seen = new RecentIds(2 * MAX_REQUEST_RECORDS)

  #running = false
  #closing: Promise<void> | null = null
  #joined = false
  #lastFetchAt = 0
  #publishFailedAt = 0
  #publishError = ''
  #crashError = ''
  #reported: BrokerState = 'down'
  #checkTimer: NodeJS.Timeout | null = null
  #restartTimer: NodeJS.Timeout | null = null
  #restarting: Promise<void> | null = null
  #restartAttempts = 0
  #groupJoined = false
  #opening: Promise<void> | null = null
  #startWaiter: { partitions: Set<number>, resolve: () => void, reject: (err: Error) => void } | null = null

  constructor (options: KafkaBrokerOptions, log: FastifyBaseLogger) {
    this.#config = normalizeKafkaOptions(options)
    this.#log = log
    const { clientId, brokers, ssl, sasl } = this.#config
    this.#kafka = new Kafka({
      clientId,
      brokers,
      ...(ssl === undefined ? {} : { ssl }),
      ...(sasl === undefined ? {} : { sasl }),
      connectionTimeout: 3_000,
      // kafkajs' default is 30 s; a broker that stops answering without
      // closing the socket should be given up on sooner.
      requestTimeout: 10_000,
      retry: { retries: 3, initialRetryTime: 300, maxRetryTime: RESTART_MAX_MS },
      logLevel: logLevel.WARN,
      logCreator: () => (entry) => this.#logKafkajs(entry)
    })
  }

  async start (instanceId: string, handler: EnvelopeHandler): Promise<void> {
    if (this.#closing !== null) throw new KafkaBrokerError('kafka broker: start() after close()')
    if (this.#handler !== null) throw new KafkaBrokerError('kafka broker: start() called twice')
    const { topic, startTimeoutMs } = this.#config
    this.#instanceId = instanceId
    this.#handler = handler
    this.#groupId = `${this.#config.groupPrefix}-${instanceId}`

    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new KafkaBrokerError(`kafka broker: start() did not finish within ${startTimeoutMs} ms${this.#crashError === '' ? '' : ` (last error: ${this.#crashError})`}`)), startTimeoutMs)
    })
    this.#opening = this.#open()
    try {
      await Promise.race([this.#opening, deadline])
    } catch (err) {
      await this.close()
      throw err instanceof KafkaBrokerError ? err : new KafkaBrokerError(`kafka broker: start() failed for topic "${topic}", group "${this.#groupId}": ${message(err)}`, { cause: err })
    } finally {
      clearTimeout(timer)
      this.#opening = null
    }
    this.#running = true
    this.#lastFetchAt = Date.now()
    this.#checkTimer = setInterval(() => this.#refresh(), CHECK_INTERVAL_MS)
    this.#checkTimer.unref()
    this.#refresh()
  }

  async #open (): Promise<void> {
    const { topic, maxWaitTimeInMs } = this.#config
    const partitions = await this.#prepareTopic()
    this.#throwIfClosing()

    const producer = this.#kafka.producer({
      // We create the topic ourselves, with the partitions and replication we
      // chose; a typo'd topic must not appear with broker defaults.
      allowAutoTopicCreation: false,
      createPartitioner: Partitioners.DefaultPartitioner,
      // Few, short retries: they ride out a leader change, and the publish
      // still settles within publishTimeoutMs plus a few hundred ms.
      retry: { retries: 2, initialRetryTime: 100, maxRetryTime: 1_000 }
    })
    this.#producer = producer
    await producer.connect()
    this.#throwIfClosing()

    const consumer = this.#kafka.consumer({
      groupId: this.#groupId,
      // One member per group: the timeouts only bound how long a crashed
      // instance holds its partitions and how long a restart's join takes.
      sessionTimeout: 10_000,
      rebalanceTimeout: 10_000,
      heartbeatInterval: 3_000,
      maxWaitTimeInMs,
      minBytes: 1,
      allowAutoTopicCreation: false,
      // restartOnFailure false: every crash comes to #onCrash, which restarts
      // with our own backoff whether kafkajs thought it retriable or not.
      retry: { retries: 3, initialRetryTime: 300, maxRetryTime: RESTART_MAX_MS, restartOnFailure: async () => false }
    })
    this.#consumer = consumer
    consumer.on(consumer.events.GROUP_JOIN, (event) => this.#onJoin(event))
    consumer.on(consumer.events.CRASH, (event) => this.#onCrash(event))
    consumer.on(consumer.events.REQUEST, (event) => {
      if (event.payload.apiName === 'Fetch') this.#lastFetchAt = Date.now()
    })
    await consumer.connect()
    this.#throwIfClosing()
    await consumer.subscribe({ topics: [topic], fromBeginning: false })
    // Checked in the same tick the waiter is set: close() rejects a waiter
    // that exists, and one created after close() began would wait forever.
    this.#throwIfClosing()

    // Resolved by #onJoin once every partition is assigned and the seek to
    // the offsets read in #prepareTopic is queued ahead of the first fetch.
    const joined = new Promise<void>((resolve, reject) => {
      this.#startWaiter = { partitions: new Set(partitions), resolve, reject }
    })
    // close() may reject it while run() is still joining; it is awaited below.
    joined.catch(() => {})
    await this.#run()
    await joined
  }

  /**
   * Creates the topic if missing and records where each partition ends now.
   * The consumer seeks there on joining, so a record published after start()
   * resolves is always read, and nothing published before it began is.
   */
  async #prepareTopic (): Promise<number[]> {
    const { topic, partitions, replicationFactor } = this.#config
    const admin = this.#kafka.admin()
    try {
      await admin.connect()
      // listTopics, not fetchTopicMetadata: asking for a missing topic's
      // metadata auto-creates it on clusters that allow that.
      if (!(await admin.listTopics()).includes(topic)) {
        // false (not an error) when another instance created it first.
        await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: partitions, replicationFactor }] })
      }
      const offsets = await admin.fetchTopicOffsets(topic)
      for (const { partition, high } of offsets) this.#position.set(partition, BigInt(high))
      return offsets.map(({ partition }) => partition)
    } finally {
      await settle(admin.disconnect(), CLOSE_STEP_MS, 'admin disconnect', this.#log)
    }
  }

  async #run (): Promise<void> {
    const consumer = this.#consumer
    if (consumer === null) return
    await consumer.run({
      eachBatch: async (payload) => this.#onBatch(payload)
    })
  }

  #onJoin (event: ConsumerGroupJoinEvent): void {
    const consumer = this.#consumer
    if (consumer === null || this.#closing !== null) return
    const { topic } = this.#config
    const assigned = event.payload.memberAssignment[topic] ?? []
    // Queued before the first fetch of this generation, which applies it; on
    // a rejoin it returns to the last delivered record, not the last commit.
    for (const partition of assigned) {
      const offset = this.#position.get(partition)
      if (offset !== undefined) consumer.seek({ topic, partition, offset: offset.toString() })
    }
    const waiter = this.#startWaiter
    if (waiter !== null) {
      // A zombie member of a reused instance id can hold partitions until its
      // session expires; start() waits for a generation that owns them all.
      if ([...waiter.partitions].some((p) => !assigned.includes(p))) return
      this.#startWaiter = null
      waiter.resolve()
    }
    this.#joined = true
    this.#groupJoined = true
    this.#crashError = ''
    this.#restartAttempts = 0
    this.#lastFetchAt = Date.now()
    this.#refresh()
  }

  #onCrash (event: ConsumerCrashEvent): void {
    // kafkajs has already disconnected the consumer when it reports a crash.
    this.#scheduleRestart(event.payload.error)
  }

  #scheduleRestart (error: Error): void {
    this.#joined = false
    this.#crashError = error.message
    if (this.#closing !== null) return
    this.#refresh()
    const delay = Math.min(RESTART_MAX_MS, RESTART_BASE_MS * 2 ** this.#restartAttempts)
    this.#restartAttempts++
    // The first failure is news; the retries of a long outage are not.
    const level = this.#restartAttempts === 1 ? 'warn' : 'debug'
    this.#log[level]({ err: error, groupId: this.#groupId, attempt: this.#restartAttempts, restartInMs: delay }, 'ws-hub: kafka consumer stopped; restarting it')
    if (this.#restartTimer !== null) clearTimeout(this.#restartTimer)
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = null
      this.#restarting = this.#restart().finally(() => { this.#restarting = null })
    }, delay)
    // Nothing to restart for if the rest of the process is done.
    this.#restartTimer.unref()
  }

  async #restart (): Promise<void> {
    const consumer = this.#consumer
    if (consumer === null || this.#closing !== null) return
    try {
      await consumer.connect()
      if (this.#closing !== null) return
      // Resolves after the join attempt; a failed join arrives as another
      // CRASH event, which schedules the next attempt.
      await this.#run()
    } catch (err) {
      // connect() failed: no CRASH event follows, so schedule the next try here.
      this.#scheduleRestart(asError(err))
    }
  }

  async #onBatch ({ batch, isStale }: EachBatchPayload): Promise<void> {
    for (const record of batch.messages) {
      // A pending seek means these records predate a rejoin; skip them.
      if (this.#closing !== null || isStale()) return
      this.#receive(batch.partition, record)
    }
  }

  #receive (partition: number, record: KafkaMessage): void {
    const offset = BigInt(record.offset)
    const next = this.#position.get(partition)
    if (next !== undefined && offset < next) {
      this.counters.duplicates++
      return
    }
    this.#position.set(partition, offset + 1n)

    // Cheap checks first: most records in a busy cluster are not for us.
    if (record.key !== null && record.key.toString() === this.#instanceId) return
    const to = header(record, TO_HEADER)
    if (to !== undefined && !addressedTo(to, this.#instanceId)) return

    let envelope: Envelope
    try {
      if (record.value === null) throw new KafkaBrokerError('record has no value')
      envelope = decodeEnvelope(record.value.toString('utf8'))
    } catch (err) {
      this.counters.invalid++
      this.#log.warn({ err, topic: this.#config.topic, partition, offset: record.offset }, 'ws-hub: skipped a Kafka record that is not an envelope')
      return
    }
    if (envelope.origin === this.#instanceId) return
    const id = header(record, ID_HEADER)
    if (id !== undefined && this.#seen.repeat(id)) {
      this.counters.duplicates++
      return
    }
    this.counters.delivered++
    try {
      this.#handler?.(envelope)
    } catch (err) {
      // A throwing handler must not crash the consumer: kafkajs would retry
      // the batch and everyone else in it would be delivered twice.
      this.#log.error({ err, target: envelope.target, origin: envelope.origin }, 'ws-hub: envelope handler threw')
    }
  }

  async publish (envelope: Envelope, options: PublishOptions = {}): Promise<void> {
    if (this.#producer === null || !this.#running || this.#closing !== null) {
      throw new KafkaBrokerError('kafka broker: publish() before start() finished or after close()')
    }
    if (options.instances !== undefined && options.instances.length === 0) return
    const { publishTimeoutMs, maxPendingPublishes } = this.#config
    const pending = this.#queue.length + this.#inFlight.length
    if (pending >= maxPendingPublishes) {
      this.counters.publishOverflows++
      throw new KafkaBrokerError(`kafka broker: ${pending} publishes already waiting for Kafka (maxPendingPublishes ${maxPendingPublishes}); envelope dropped`)
    }
    this.#seq++
    const headers: IHeaders = { [ID_HEADER]: `${this.#sender}/${this.#seq}` }
    if (options.instances !== undefined) headers[TO_HEADER] = JSON.stringify(options.instances)
    const value = encodeEnvelope(envelope)
    await new Promise<void>((resolve, reject) => {
      const item: Outgoing = {
        // Keyed by origin: with several partitions, one origin's envelopes
        // share a partition and keep their order.
        message: { key: envelope.origin, value, headers },
        bytes: Buffer.byteLength(value),
        resolve,
        reject,
        done: false,
        timer: setTimeout(() => this.#expire(item), publishTimeoutMs)
      }
      this.#queue.push(item)
      this.#flush()
    })
  }

  /**
   * Sends what is queued as one request, unless a request is in flight: then
   * the queue waits for it. One request at a time keeps publish order (a
   * retried request cannot be overtaken) and batches under load without a
   * linger delay when idle.
   */
  #flush (): void {
    const producer = this.#producer
    if (this.#inFlight.length > 0 || this.#queue.length === 0 || producer === null) return
    let bytes = 0
    let count = 0
    for (const item of this.#queue) {
      if (count === MAX_REQUEST_RECORDS || (count > 0 && bytes + item.bytes > MAX_REQUEST_BYTES)) break
      bytes += item.bytes
      count++
    }
    const batch = this.#queue.splice(0, count)
    this.#inFlight = batch
    const { topic, acks, publishTimeoutMs } = this.#config
    // timeout: how long the leader may wait for replicas under acks -1; no
    // point waiting longer than the publishes in the request are waited for.
    producer.send({ topic, acks, timeout: publishTimeoutMs, compression: CompressionTypes.None, messages: batch.map((item) => item.message) }).then(
      () => {
        this.#publishFailedAt = 0
        this.#settle(batch, null)
      },
      (err: unknown) => {
        this.#publishFailed(err)
        this.#settle(batch, new KafkaBrokerError(`kafka broker: publish to topic "${topic}" failed: ${message(err)}`, { cause: err }))
      }
    ).finally(() => {
      // Counted until kafkajs settles, not when a publish times out: a
      // request still being retried holds its buffers.
      this.#inFlight = []
      if (this.#closing === null) this.#flush()
    }).catch((err: unknown) => this.#log.error({ err }, 'ws-hub: kafka publish bookkeeping failed'))
  }

  /** A publish nobody acknowledged in time: rejected, and dropped if not yet sent. */
  #expire (item: Outgoing): void {
    const index = this.#queue.indexOf(item)
    if (index !== -1) this.#queue.splice(index, 1)
    const error = new KafkaBrokerError(`kafka broker: publish to topic "${this.#config.topic}" not acknowledged within ${this.#config.publishTimeoutMs} ms`)
    this.#publishFailed(error)
    this.#settle([item], error)
  }

  #publishFailed (err: unknown): void {
    if (isRecordError(err)) return
    this.#publishFailedAt = Date.now()
    this.#publishError = message(err)
    this.#refresh()
  }

  #settle (items: Outgoing[], error: Error | null): void {
    for (const item of items) {
      if (item.done) continue
      item.done = true
      clearTimeout(item.timer)
      if (error === null) {
        this.counters.published++
        item.resolve()
      } else {
        this.counters.publishFailures++
        item.reject(error)
      }
    }
  }

  state (): BrokerState {
    return this.#refresh()
  }

  /** Evaluates the state and logs it when it changed. */
  #refresh (): BrokerState {
    const { state, reason } = this.#evaluate()
    if (this.#closing === null && state !== this.#reported) {
      this.#reported = state
      const context = { topic: this.#config.topic, groupId: this.#groupId }
      if (state === 'down') this.#log.warn({ ...context, reason }, 'ws-hub: kafka broker down; envelopes to and from other instances are lost until it recovers')
      else this.#log.info(context, 'ws-hub: kafka broker up')
    }
    return state
  }

  #evaluate (): { state: BrokerState, reason: string } {
    if (!this.#running || this.#closing !== null) return { state: 'down', reason: 'not started or closed' }
    if (!this.#joined) return { state: 'down', reason: this.#crashError === '' ? 'consumer is joining its group' : `consumer crashed: ${this.#crashError}` }
    const now = Date.now()
    const silent = now - this.#lastFetchAt
    if (silent > STALL_MS) return { state: 'down', reason: `no fetch answered for ${silent} ms` }
    if (now - this.#publishFailedAt < STALL_MS) return { state: 'down', reason: `publish failed: ${this.#publishError}` }
    return { state: 'up', reason: '' }
  }

  close (): Promise<void> {
    this.#closing ??= this.#shutdown()
    return this.#closing
  }

  async #shutdown (): Promise<void> {
    const wasRunning = this.#running
    this.#running = false
    if (this.#checkTimer !== null) clearInterval(this.#checkTimer)
    if (this.#restartTimer !== null) clearTimeout(this.#restartTimer)
    this.#checkTimer = null
    this.#restartTimer = null
    const waiter = this.#startWaiter
    this.#startWaiter = null
    waiter?.reject(new KafkaBrokerError('kafka broker: closed before start() finished'))
    const log = this.#log
    // Let a start() in progress stop at its next step before releasing what
    // it opened. Its error goes to start()'s caller, so it is not logged here.
    if (this.#opening !== null) await withTimeout(this.#opening, CLOSE_STEP_MS, 'start').catch(() => {})
    // A restart in flight would otherwise reconnect after we disconnect.
    if (this.#restarting !== null) await settle(this.#restarting, CLOSE_STEP_MS, 'consumer restart', log)
    // Disconnecting leaves the group, so it is empty and can be deleted.
    if (this.#consumer !== null) await settle(this.#consumer.disconnect(), CLOSE_STEP_MS, 'consumer disconnect', log)
    // Queued publishes were never sent; the request in flight gets until the
    // producer has disconnected to be acknowledged.
    const closed = new KafkaBrokerError('kafka broker: closed before the publish was acknowledged')
    this.#settle(this.#queue.splice(0), closed)
    if (this.#producer !== null) await settle(this.#producer.disconnect(), CLOSE_STEP_MS, 'producer disconnect', log)
    this.#settle(this.#inFlight, closed)
    if (this.#groupJoined) await this.#deleteGroup()
    this.#consumer = null
    this.#producer = null
    this.#handler = null
    if (wasRunning) log.info({ topic: this.#config.topic, groupId: this.#groupId }, 'ws-hub: kafka broker closed')
  }

  /** Best effort: a group left behind expires with offsets.retention.minutes. */
  async #deleteGroup (): Promise<void> {
    const admin: Admin = this.#kafka.admin({ retry: { retries: 1, initialRetryTime: 100, maxRetryTime: 500 } })
    const work = (async () => {
      await admin.connect()
      await admin.deleteGroups([this.#groupId])
    })()
    try {
      await withTimeout(work, CLOSE_STEP_MS, 'delete consumer group')
    } catch (err) {
      this.#log.warn({ err, groupId: this.#groupId }, 'ws-hub: could not delete the kafka consumer group; it expires with offsets.retention.minutes')
    } finally {
      await settle(admin.disconnect(), CLOSE_STEP_MS, 'admin disconnect', this.#log)
    }
  }

  // kafkajs reports its own retries at ERROR even when they succeed (a topic
  // another instance created first, a coordinator still loading). What really
  // failed reaches this broker as a rejection or a CRASH and is logged here
  // with context, so kafkajs' lines are context: warn, never stdout. Once an
  // outage has been reported, its every reconnect attempt drops to debug.
  #logKafkajs (entry: LogEntry): void {
    const { message: text, timestamp: _timestamp, logger: _logger, ...extra } = entry.log
    const level = this.#running && this.#reported === 'down' ? 'debug' : 'warn'
    this.#log[level]({ kafkajs: entry.namespace, ...extra }, `ws-hub: kafkajs: ${String(text)}`)
  }

  #throwIfClosing (): void {
    if (this.#closing !== null) throw new KafkaBrokerError('kafka broker: closed before start() finished')
  }
}

function isRecordError (err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    const type = (e as Error & { type?: unknown }).type
    if (typeof type === 'string' && RECORD_ERRORS.has(type)) return true
  }
  return false
}

function message (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

function asError (err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err))
}

async function withTimeout<T> (work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new KafkaBrokerError(`${what} took longer than ${ms} ms`)), ms)
  })
  // Whichever loses the race must not become an unhandled rejection.
  work.catch(() => {})
  try {
    return await Promise.race([work, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** Awaits a cleanup step within a bound; a failure is logged, not thrown. */
async function settle (work: Promise<unknown>, ms: number, what: string, log: FastifyBaseLogger): Promise<void> {
  try {
    await withTimeout(work, ms, what)
  } catch (err) {
    log.warn({ err }, `ws-hub: kafka ${what} failed`)
  }
}

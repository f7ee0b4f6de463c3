import type { FastifyBaseLogger } from 'fastify'
import type {
  Consumer,
  ConsumerCrashEvent,
  ConsumerGroupJoinEvent,
  EachBatchPayload,
  Kafka,
  KafkaMessage,
  Producer
} from 'kafkajs'
import { TransportError } from '../../errors.js'
import { DEFAULT_MAX_ENVELOPE_AGE_MS, decodeEnvelope, type Envelope } from '../envelope.js'
import type { EnvelopeHandler, Transport, TransportContext, TransportState } from '../transport.js'
import { normalizeKafkaOptions, type KafkaConfig } from './kafka-options.js'
import { KafkaPublisher, MAX_REQUEST_RECORDS, type PublishCounters } from './kafka-publisher.js'
import { addressedTo, header, ID_HEADER, RecentIds, TO_HEADER } from './kafka-records.js'
import { createConsumer, createKafka, createProducer, deleteGroup, prepareTopic } from './kafka-cluster.js'
import { PartitionPositions } from './kafka-positions.js'
import { ConsumerRestarts } from './kafka-restarts.js'
import { asError, CLOSE_STEP_MS, message, settle, withTimeout } from './kafka-timeouts.js'
export { KAFKA_DEFAULTS } from './kafka-options.js'

/** What `KafkaTransport` is built from; checked and defaulted by `normalizeKafkaOptions`. */
export type KafkaTransportOptions = Parameters<typeof normalizeKafkaOptions>[0]

// A consumer that has had no fetch answered for this long, or a publish that
// failed this recently, makes state() 'down'. Idle fetches return every
// maxWaitTimeInMs, so silence this long means Kafka is unreachable.
const STALL_MS = 5_000
const CHECK_INTERVAL_MS = 250

export interface KafkaTransportCounters extends PublishCounters {
  /** Envelopes handed to the handler. */
  delivered: number
  /** Records dropped because this instance had already seen them. */
  duplicates: number
  /** Records on the topic that are not envelopes. */
  invalid: number
}

/**
 * Transport over one Kafka topic. Every instance consumes every record
 * through its own consumer group and drops what is its own or addressed to
 * others.
 *
 * Interest routing is a filter on receipt, not a route: a deliver envelope
 * for a topic is still read by every instance, and handed over only by those
 * that subscribed to the topic. So `subscribe` and `unsubscribe` take effect,
 * and resolve, at once; they cost nothing, and save only the handler's work,
 * not Kafka's or the network's.
 *
 * Delivery is at most once and never duplicated: the consumer keeps its
 * position in memory and seeks back to it whenever it rejoins its group, and
 * records carry a sender sequence number so a producer retry that Kafka wrote
 * twice is handed over once. A publish already in a request when it timed
 * out cannot be taken back from kafkajs and may be written late; it is
 * reported failed only once receivers drop it as stale (see KafkaPublisher).
 *
 * Latency tuning: acks 1 by default (see `acks`). No linger: an idle
 * transport sends a publish at once; publishes made while a request is in
 * flight go together in the next one, so batching grows with load only. No
 * compression: frames are small and compressing costs CPU on every hop.
 * Consumer `minBytes` 1, so a fetch returns as soon as one record exists.
 * Publishes from one instance arrive in the order publish() was called.
 */
export class KafkaTransport implements Transport {
  readonly counters: KafkaTransportCounters = { published: 0, publishOverflows: 0, publishFailures: 0, delivered: 0, duplicates: 0, invalid: 0 }
  readonly #config: KafkaConfig
  readonly #log: FastifyBaseLogger
  readonly #kafka: Kafka
  #instanceId = ''
  #groupId = ''
  #maxEnvelopeAgeMs = DEFAULT_MAX_ENVELOPE_AGE_MS
  #handler: EnvelopeHandler | null = null
  #producer: Producer | null = null
  #publisher: KafkaPublisher | null = null
  #consumer: Consumer | null = null
  /** Topics whose deliver envelopes this instance hands over. */
  readonly #topics = new Set<string>()
  readonly #positions = new PartitionPositions()
  readonly #seen = new RecentIds(2 * MAX_REQUEST_RECORDS)

  #running = false
  #closing: Promise<void> | null = null
  #joined = false
  #lastFetchAt = 0
  #publishFailedAt = 0
  #publishError = ''
  #crashError = ''
  #reported: TransportState = 'down'
  #checkTimer: NodeJS.Timeout | null = null
  readonly #restarts: ConsumerRestarts
  #groupJoined = false
  #opening: Promise<void> | null = null
  #startWaiter: { partitions: Set<number>, resolve: () => void, reject: (err: Error) => void } | null = null

  constructor (options: KafkaTransportOptions, log: FastifyBaseLogger) {
    this.#config = normalizeKafkaOptions(options)
    this.#log = log
    this.#kafka = createKafka(this.#config, log, () => this.#running && this.#reported === 'down')
    this.#restarts = new ConsumerRestarts(async () => this.#restart(), log)
  }

  async start (instanceId: string, handler: EnvelopeHandler, context?: TransportContext): Promise<void> {
    if (this.#closing !== null) throw new TransportError('kafka transport: start() after close()')
    if (this.#handler !== null) throw new TransportError('kafka transport: start() called twice')
    const { topic, startTimeoutMs } = this.#config
    this.#instanceId = instanceId
    this.#maxEnvelopeAgeMs = context?.maxEnvelopeAgeMs ?? DEFAULT_MAX_ENVELOPE_AGE_MS
    this.#handler = handler
    this.#groupId = `${this.#config.groupPrefix}-${instanceId}`

    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new TransportError(`kafka transport: start() did not finish within ${startTimeoutMs} ms${this.#crashError === '' ? '' : ` (last error: ${this.#crashError})`}`)), startTimeoutMs)
    })
    this.#opening = this.#open()
    try {
      await Promise.race([this.#opening, deadline])
    } catch (err) {
      await this.close()
      throw err instanceof TransportError ? err : new TransportError(`kafka transport: start() failed for topic "${topic}", group "${this.#groupId}": ${message(err)}`, { cause: err })
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
    const { topic } = this.#config
    const ends = await prepareTopic(this.#kafka, this.#config, this.#log)
    this.#positions.startAt(ends)
    this.#throwIfClosing()

    const producer = createProducer(this.#kafka)
    this.#producer = producer
    await producer.connect()
    this.#throwIfClosing()
    this.#publisher = new KafkaPublisher(producer, { ...this.#config, maxEnvelopeAgeMs: this.#maxEnvelopeAgeMs }, this.counters, {
      sent: () => { this.#publishFailedAt = 0 },
      failed: (reason) => {
        this.#publishFailedAt = Date.now()
        this.#publishError = reason
        this.#refresh()
      }
    }, this.#log)

    const consumer = createConsumer(this.#kafka, this.#groupId, this.#config)
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
    // the offsets prepareTopic read is queued ahead of the first fetch.
    const joined = new Promise<void>((resolve, reject) => {
      this.#startWaiter = { partitions: new Set(ends.keys()), resolve, reject }
    })
    // close() may reject it while run() is still joining; it is awaited below.
    joined.catch(() => {})
    await this.#run()
    await joined
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
    // On a rejoin this returns to the last delivered record, not the last commit.
    this.#positions.seek(consumer, topic, assigned)
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
    this.#restarts.joined()
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
    this.#restarts.schedule(error, this.#groupId)
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
    if (!this.#positions.advance(partition, record.offset)) {
      this.counters.duplicates++
      return
    }

    // Cheap checks first: most records in a busy cluster are not for us.
    if (record.key !== null && record.key.toString() === this.#instanceId) return
    const to = header(record, TO_HEADER)
    if (to !== undefined && !addressedTo(to, this.#instanceId)) return

    let envelope: Envelope
    try {
      if (record.value === null) throw new TransportError('record has no value')
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
    if (to === undefined && envelope.type === 'deliver' && envelope.target.kind === 'topic' && !this.#topics.has(envelope.target.topic)) return
    this.counters.delivered++
    try {
      this.#handler?.(envelope)
    } catch (err) {
      // A throwing handler must not crash the consumer: kafkajs would retry
      // the batch and everyone else in it would be delivered twice.
      this.#log.error({ err, type: envelope.type, origin: envelope.origin }, 'ws-hub: envelope handler threw')
    }
  }

  async publish (envelope: Envelope, to?: readonly string[]): Promise<void> {
    const publisher = this.#publisher
    if (publisher === null || !this.#running || this.#closing !== null) {
      throw new TransportError('kafka transport: publish() before start() finished or after close()')
    }
    await publisher.publish(envelope, to)
  }

  /** Resolves at once: interest is checked on receipt (see the class comment). */
  async subscribe (topic: string): Promise<void> {
    if (!this.#running || this.#closing !== null) {
      throw new TransportError('kafka transport: subscribe() before start() finished or after close()')
    }
    this.#topics.add(topic)
  }

  async unsubscribe (topic: string): Promise<void> {
    this.#topics.delete(topic)
  }

  state (): TransportState {
    return this.#refresh()
  }

  /** Evaluates the state and logs it when it changed. */
  #refresh (): TransportState {
    const { state, reason } = this.#evaluate()
    if (this.#closing === null && state !== this.#reported) {
      this.#reported = state
      const context = { topic: this.#config.topic, groupId: this.#groupId }
      if (state === 'down') this.#log.warn({ ...context, reason }, 'ws-hub: kafka transport down; envelopes to and from other instances are lost until it recovers')
      else this.#log.info(context, 'ws-hub: kafka transport up')
    }
    return state
  }

  #evaluate (): { state: TransportState, reason: string } {
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
    this.#checkTimer = null
    this.#restarts.stop()
    const waiter = this.#startWaiter
    this.#startWaiter = null
    waiter?.reject(new TransportError('kafka transport: closed before start() finished'))
    const log = this.#log
    // Let a start() in progress stop at its next step before releasing what
    // it opened. Its error goes to start()'s caller, so it is not logged here.
    if (this.#opening !== null) await withTimeout(this.#opening, CLOSE_STEP_MS, 'start').catch(() => {})
    // A restart in flight would otherwise reconnect after we disconnect.
    const restarting = this.#restarts.inFlight
    if (restarting !== null) await settle(restarting, CLOSE_STEP_MS, 'consumer restart', log)
    // Disconnecting leaves the group, so it is empty and can be deleted.
    if (this.#consumer !== null) await settle(this.#consumer.disconnect(), CLOSE_STEP_MS, 'consumer disconnect', log)
    // Queued publishes were never sent; the request in flight gets until the
    // producer has disconnected to be acknowledged.
    const closed = new TransportError('kafka transport: closed before the publish was acknowledged')
    this.#publisher?.stop(closed)
    if (this.#producer !== null) await settle(this.#producer.disconnect(), CLOSE_STEP_MS, 'producer disconnect', log)
    this.#publisher?.abandon(closed)
    if (this.#groupJoined) await deleteGroup(this.#kafka, this.#groupId, log)
    this.#consumer = null
    this.#producer = null
    this.#topics.clear()
    this.#handler = null
    if (wasRunning) log.info({ topic: this.#config.topic, groupId: this.#groupId }, 'ws-hub: kafka transport closed')
  }

  #throwIfClosing (): void {
    if (this.#closing !== null) throw new TransportError('kafka transport: closed before start() finished')
  }
}

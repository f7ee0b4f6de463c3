import type { Consumer, Kafka, Producer } from 'kafkajs'
import { SourceError } from '../../errors.js'
import type { KafkaSourceConfig } from '../../options/source-options.js'
import { asError, CLOSE_STEP_MS, settle } from '../../cluster/kafka/kafka-timeouts.js'
import type { BadRecordReason, SourceConsumer, SourceContext, SourceRecord, SourceSink } from '../source.js'
import { deliverBatch } from './kafka-batch.js'
import { createConsumer, createKafka, createProducer, MAX_WAIT_MS, RETRY_MAX_MS } from './kafka-clients.js'
import { GroupLag } from './kafka-lag.js'
import { deadLetterMessage, KafkaRecord } from './kafka-records.js'

// The first restart's delay after a crash, doubled per failed attempt up to RETRY_MAX_MS.
const RESTART_BASE_MS = 250
// Commits within a long batch at most this often; kafkajs commits at every batch's end too.
const COMMIT_INTERVAL_MS = 1_000
const STALL_CHECK_MS = 1_000

/**
 * Reads Kafka topics in a consumer group every hub instance joins: each
 * partition is read by one instance at a time, in order, and handed over
 * when that instance leaves or dies. Delivery is at least once: only
 * offsets of records the hub took are committed, and a record read again
 * (after a crash, a rebalance) has the same key, so the hub drops the copy.
 *
 * kafkajs never restarts the consumer by itself here: every crash, and a
 * first connect that fails, schedules a restart with a bounded backoff,
 * until close.
 */
export class KafkaSource implements SourceConsumer {
  readonly deadLetter?: (record: SourceRecord, reason: BadRecordReason) => Promise<void>
  readonly #config: KafkaSourceConfig
  readonly #context: SourceContext
  readonly #kafka: Kafka
  readonly #consumer: Consumer
  readonly #lag: GroupLag
  #sink: SourceSink | null = null
  #subscribed = false
  /** The connect attempt in progress: close() waits for it, or it would reconnect after the disconnect. */
  #attempt: Promise<void> | null = null
  #restartTimer: NodeJS.Timeout | null = null
  #restarts = 0
  #producer: Promise<Producer> | null = null

  #joined = false
  /** Down as the sink last heard it: kafkajs' own lines go quiet meanwhile. */
  #down = false
  /** Batches being delivered: no fetch is made meanwhile, so silence then is not a stall. */
  #inBatch = 0
  #answeredAt = 0
  #stallTimer: NodeJS.Timeout | null = null
  readonly #stallMs: number

  #closing: Promise<void> | null = null
  #wakeClosed: () => void = () => {}
  readonly #closed = new Promise<void>((resolve) => { this.#wakeClosed = resolve })

  constructor (config: KafkaSourceConfig, context: SourceContext) {
    this.#config = config
    this.#context = context
    this.#kafka = createKafka(config, context.log, () => this.#down)
    this.#consumer = createConsumer(this.#kafka, config)
    this.#lag = new GroupLag(this.#kafka, config, context.log)
    // A member answers at least every heartbeat (idle, without partitions)
    // or every fetch wait; twice that in silence is a broker that hangs,
    // reported well before kafkajs' request timeout and retries give up.
    this.#stallMs = Math.max(5_000, 2 * config.heartbeatIntervalMs + MAX_WAIT_MS)
    const { events } = this.#consumer
    this.#consumer.on(events.GROUP_JOIN, () => { this.#onJoin() })
    // kafkajs has already disconnected the consumer when it reports a crash.
    // DISCONNECT is not listened to: kafkajs emits it only from disconnect(),
    // which only a crash (reported here, with its cause) or close() calls.
    this.#consumer.on(events.CRASH, (event) => { this.#onFailure(event.payload.error) })
    this.#consumer.on(events.REQUEST, () => { this.#onAnswer() })
    const topic = config.deadLetter?.topic
    if (topic !== undefined) this.deadLetter = async (record, reason) => { await this.#sendDeadLetter(topic, record, reason) }
  }

  /** Returns after the first attempt to connect and join; a failed one is retried in the background. */
  async start (sink: SourceSink): Promise<void> {
    if (this.#closing !== null) throw new SourceError(`kafka source ${this.#config.name}: start() after close()`)
    if (this.#sink !== null) throw new SourceError(`kafka source ${this.#config.name}: start() called twice`)
    this.#sink = sink
    this.#stallTimer = setInterval(() => { this.#checkStall() }, STALL_CHECK_MS).unref()
    await this.#connect()
  }

  async lag (): Promise<number | null> {
    return await this.#lag.read()
  }

  close (): Promise<void> {
    this.#closing ??= this.#shutdown()
    return this.#closing
  }

  /** One attempt; never rejects (a failure schedules the next). */
  #connect (): Promise<void> {
    const attempt = (async () => {
      const consumer = this.#consumer
      try {
        await consumer.connect()
        if (this.#closing !== null) return
        if (!this.#subscribed) {
          // kafkajs keeps the subscription across restarts; it fails while
          // a topic is missing, so it is retried with the connect.
          await consumer.subscribe({ topics: this.#config.topics, fromBeginning: this.#config.from === 'earliest' })
          this.#subscribed = true
        }
        if (this.#closing !== null) return
        // Resolves once the first join ended; a failed join comes as a CRASH.
        await consumer.run({
          autoCommit: true,
          autoCommitInterval: COMMIT_INTERVAL_MS,
          // Only what the hub took is resolved (see deliverBatch).
          eachBatchAutoResolve: false,
          eachBatch: async (payload) => {
            const sink = this.#sink
            if (sink === null) return
            this.#inBatch++
            try {
              await deliverBatch(payload, { sink, closed: this.#closed, closing: () => this.#closing !== null, heartbeatMs: this.#config.heartbeatIntervalMs })
            } finally {
              // Silence counts from here: the fetch after a long batch is not late.
              if (--this.#inBatch === 0) this.#answeredAt = Date.now()
            }
          }
        })
      } catch (err) {
        // connect() or subscribe() failed: no CRASH follows, so this schedules the next try.
        this.#onFailure(asError(err))
      }
    })()
    this.#attempt = attempt
    return attempt.finally(() => { if (this.#attempt === attempt) this.#attempt = null })
  }

  #onJoin (): void {
    if (this.#closing !== null) return
    this.#joined = true
    this.#restarts = 0
    this.#answeredAt = Date.now()
    this.#report(true)
  }

  #onAnswer (): void {
    this.#answeredAt = Date.now()
    // A stalled broker that answers again: kafkajs never crashed, so no join follows.
    if (this.#joined && this.#down) this.#report(true)
  }

  #onFailure (error: Error): void {
    this.#joined = false
    if (this.#closing !== null) return
    this.#report(false, error)
    const delay = Math.min(RETRY_MAX_MS, RESTART_BASE_MS * 2 ** this.#restarts)
    this.#restarts++
    if (this.#restartTimer !== null) clearTimeout(this.#restartTimer)
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = null
      // #connect reports its own failures; this catch is for a bug in it.
      this.#connect().catch((err: unknown) => { this.#onFailure(asError(err)) })
    }, delay).unref()
  }

  #checkStall (): void {
    if (!this.#joined || this.#down || this.#inBatch > 0 || this.#closing !== null) return
    const silent = Date.now() - this.#answeredAt
    if (silent > this.#stallMs) this.#report(false, new SourceError(`kafka source ${this.#config.name}: no answer from Kafka for ${silent} ms`))
  }

  #report (up: boolean, err?: unknown): void {
    this.#down = !up
    this.#sink?.connected(up, err)
  }

  async #sendDeadLetter (topic: string, record: SourceRecord, reason: BadRecordReason): Promise<void> {
    if (!(record instanceof KafkaRecord)) throw new SourceError(`kafka source ${this.#config.name}: deadLetter() of a record it did not read`)
    if (this.#closing !== null) throw new SourceError(`kafka source ${this.#config.name}: deadLetter() after close()`)
    const producer = await this.#connectedProducer()
    // acks -1: the bad record's offset is committed next; its copy must not be lost with a leader.
    await producer.send({ topic, acks: -1, messages: [deadLetterMessage(record, reason)] })
  }

  async #connectedProducer (): Promise<Producer> {
    if (this.#producer === null) {
      const producer = createProducer(this.#kafka)
      const connecting = producer.connect().then(() => producer)
      this.#producer = connecting
      // A failed connect is not kept: the runner holds the record and the next dead letter tries again.
      connecting.catch(() => { if (this.#producer === connecting) this.#producer = null })
    }
    return await this.#producer
  }

  async #shutdown (): Promise<void> {
    const log = this.#context.log
    this.#wakeClosed()
    if (this.#restartTimer !== null) clearTimeout(this.#restartTimer)
    if (this.#stallTimer !== null) clearInterval(this.#stallTimer)
    this.#restartTimer = null
    this.#stallTimer = null
    if (this.#attempt !== null) await settle(this.#attempt, CLOSE_STEP_MS, 'source connect', log)
    // Opened first, closed first. disconnect() stops the consumer: it waits
    // for the batch in hand (which ends at once, see deliverBatch), whose end
    // commits every resolved offset, then leaves the group so another
    // instance takes its partitions without waiting for the session timeout.
    if (this.#sink !== null) await settle(this.#consumer.disconnect(), CLOSE_STEP_MS, 'source consumer disconnect', log)
    const producer = this.#producer
    this.#producer = null
    // A connect that failed was reported to the dead letter that started it.
    if (producer !== null) await settle(producer.then(async (p) => { await p.disconnect() }, () => {}), CLOSE_STEP_MS, 'source producer disconnect', log)
    await this.#lag.close()
  }
}

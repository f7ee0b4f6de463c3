import { randomUUID } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import { CompressionTypes, type IHeaders, type Message, type Producer } from 'kafkajs'
import { TransportError } from '../../errors.js'
import { encodeEnvelope, type Envelope } from '../envelope.js'
import type { KafkaConfig } from './kafka-options.js'
import { ID_HEADER, TO_HEADER } from './kafka-records.js'
import { message } from './kafka-timeouts.js'

// A sender has one request in flight at a time, of at most these many
// records or bytes. Kafka refuses a record batch above max.message.bytes
// (1 MiB by default), and a request to one partition is one batch.
export const MAX_REQUEST_RECORDS = 500
const MAX_REQUEST_BYTES = 512 * 1024

// Records the broker refused for what they are: these say nothing about the
// cluster's health, so they do not turn state() 'down'.
const RECORD_ERRORS = new Set(['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE', 'INVALID_RECORD', 'CORRUPT_MESSAGE'])

export interface PublishCounters {
  /** Envelopes Kafka acknowledged. */
  published: number
  /** Publishes rejected at once because `maxPendingPublishes` were waiting. */
  publishOverflows: number
  /**
   * Publishes that failed or timed out. One that may already have been sent
   * is counted only once it is older than `maxEnvelopeAgeMs`, so no instance
   * handles it afterwards.
   */
  publishFailures: number
}

/** How the publisher tells the transport about the cluster's health. */
export interface PublishHealth {
  /** A request was acknowledged. */
  sent: () => void
  /** A publish failed for a reason that is the cluster's, not the record's. */
  failed: (reason: string) => void
}

interface Outgoing {
  message: Message
  bytes: number
  resolve: () => void
  reject: (err: Error) => void
  timer: NodeJS.Timeout
  /** When receivers start dropping it as stale, by this host's clock. */
  staleAt: number
  /** Resolved or rejected: later outcomes are ignored. */
  done: boolean
}

type PublishConfig = Pick<KafkaConfig, 'topic' | 'acks' | 'publishTimeoutMs' | 'maxPendingPublishes'> & {
  /** The hub's `maxEnvelopeAgeMs`. */
  maxEnvelopeAgeMs: number
}

/**
 * The publish queue of one Kafka transport. One request is in flight at a
 * time: that keeps publish order (a retried request cannot be overtaken) and
 * batches under load without a linger delay when idle. Records carry a
 * sender sequence number, so a request kafkajs retried and Kafka wrote twice
 * is recognised on receipt.
 *
 * A publish not acknowledged within `publishTimeoutMs` is dropped if it is
 * still queued. If it is in the request kafkajs is sending, it cannot be
 * taken back (kafkajs has no way to abort a request, and it retries it), so
 * it may still be written; it is rejected only once it is older than
 * `maxEnvelopeAgeMs`, when every receiver drops it, and an acknowledgement
 * arriving before then still resolves it. A publish reported failed is thus
 * never handled anywhere afterwards.
 */
export class KafkaPublisher {
  readonly #producer: Producer
  readonly #config: PublishConfig
  readonly #counters: PublishCounters
  readonly #health: PublishHealth
  readonly #log: FastifyBaseLogger
  readonly #sender = randomUUID()
  #seq = 0
  /** Publishes not yet handed to kafkajs, in call order. */
  readonly #queue: Outgoing[] = []
  /** Publishes in the request kafkajs is sending. */
  #inFlight: Outgoing[] = []
  #stopped = false

  constructor (producer: Producer, config: PublishConfig, counters: PublishCounters, health: PublishHealth, log: FastifyBaseLogger) {
    this.#producer = producer
    this.#config = config
    this.#counters = counters
    this.#health = health
    this.#log = log
  }

  /** Resolves once Kafka acknowledged the record; rejects on failure, timeout or overflow. */
  async publish (envelope: Envelope, to: readonly string[] | undefined): Promise<void> {
    if (this.#stopped) throw new TransportError('kafka transport: publish() after close()')
    if (to !== undefined && to.length === 0) return
    const { publishTimeoutMs, maxPendingPublishes } = this.#config
    const pending = this.#queue.length + this.#inFlight.length
    if (pending >= maxPendingPublishes) {
      this.#counters.publishOverflows++
      throw new TransportError(`kafka transport: ${pending} publishes already waiting for Kafka (maxPendingPublishes ${maxPendingPublishes}); envelope dropped`)
    }
    this.#seq++
    const headers: IHeaders = { [ID_HEADER]: `${this.#sender}/${this.#seq}` }
    if (to !== undefined) headers[TO_HEADER] = JSON.stringify(to)
    const sentAt = envelope.sentAt ?? Date.now()
    const value = encodeEnvelope(envelope, sentAt)
    await new Promise<void>((resolve, reject) => {
      const item: Outgoing = {
        // Keyed by origin: with several partitions, one origin's envelopes
        // share a partition and keep their order.
        message: { key: envelope.origin, value, headers },
        bytes: Buffer.byteLength(value),
        resolve,
        reject,
        done: false,
        staleAt: sentAt + this.#config.maxEnvelopeAgeMs + 1,
        timer: setTimeout(() => this.#expire(item), publishTimeoutMs)
      }
      this.#queue.push(item)
      this.#flush()
    })
  }

  /** Rejects what was never sent and sends nothing more; the request in flight may still be acknowledged. */
  stop (error: Error): void {
    this.#stopped = true
    this.#settle(this.#queue.splice(0), error)
  }

  /** Gives up on the request in flight; for after the producer disconnected without acknowledging it. */
  abandon (error: Error): void {
    // It may have been written before the disconnect.
    for (const item of this.#inFlight) this.#hold(item, error)
  }

  #flush (): void {
    if (this.#stopped || this.#inFlight.length > 0 || this.#queue.length === 0) return
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
    this.#producer.send({ topic, acks, timeout: publishTimeoutMs, compression: CompressionTypes.None, messages: batch.map((item) => item.message) }).then(
      () => {
        this.#health.sent()
        this.#settle(batch, null)
      },
      (err: unknown) => {
        this.#failed(err)
        const error = new TransportError(`kafka transport: publish to topic "${topic}" failed: ${message(err)}`, { cause: err })
        // A refused record was not written. Any other failure (a timeout, a
        // connection lost mid-request, retries exhausted) may follow a
        // write whose acknowledgement was lost.
        if (isRecordError(err)) this.#settle(batch, error)
        else for (const item of batch) this.#hold(item, error)
      }
    ).finally(() => {
      // Counted until kafkajs settles, not when a publish times out: a
      // request still being retried holds its buffers.
      this.#inFlight = []
      this.#flush()
    }).catch((err: unknown) => this.#log.error({ err }, 'ws-hub: kafka publish bookkeeping failed'))
  }

  /** A publish nobody acknowledged in time: dropped if not yet sent, else held until stale. */
  #expire (item: Outgoing): void {
    const error = new TransportError(`kafka transport: publish to topic "${this.#config.topic}" not acknowledged within ${this.#config.publishTimeoutMs} ms`)
    this.#failed(error)
    const index = this.#queue.indexOf(item)
    if (index === -1) {
      this.#hold(item, error)
      return
    }
    this.#queue.splice(index, 1)
    this.#settle([item], error)
  }

  /**
   * Rejects a publish that may have been written once receivers drop it as
   * stale; an acknowledgement before then resolves it instead.
   */
  #hold (item: Outgoing, error: Error): void {
    if (item.done) return
    clearTimeout(item.timer)
    const wait = item.staleAt - Date.now()
    if (wait <= 0) this.#settle([item], error)
    else item.timer = setTimeout(() => this.#settle([item], new TransportError(`${error.message}; reported once older than maxEnvelopeAgeMs (${this.#config.maxEnvelopeAgeMs} ms), from when no instance handles it`, { cause: error })), wait)
  }

  #failed (err: unknown): void {
    if (!isRecordError(err)) this.#health.failed(message(err))
  }

  #settle (items: Outgoing[], error: Error | null): void {
    for (const item of items) {
      if (item.done) continue
      item.done = true
      clearTimeout(item.timer)
      if (error === null) {
        this.#counters.published++
        item.resolve()
      } else {
        this.#counters.publishFailures++
        item.reject(error)
      }
    }
  }
}

function isRecordError (err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    const type = (e as Error & { type?: unknown }).type
    if (typeof type === 'string' && RECORD_ERRORS.has(type)) return true
  }
  return false
}

import type { FastifyBaseLogger } from 'fastify'
import { connect, type IClientOptions, type IConnackPacket, type IPublishPacket, type MqttClient } from 'mqtt'
import type { SourceSink } from '../source.js'
import { CLOSE_TIMEOUT_MS, endClient, withTimeout } from './end-client.js'
import { SourceError } from '../../errors.js'
import { mqttRecord } from './mqtt-record.js'

export interface MqttReaderOptions {
  url: string
  client: IClientOptions
  /** As subscribed: with `$share/<group>/` in front for a shared subscription. */
  filters: readonly string[]
  qos: 1 | 2
  /**
   * Unsubscribe before disconnecting on close. A persistent session's shared
   * subscription goes on taking its share of the group's messages while
   * nobody reads them; leaving hands them to the instances still reading.
   */
  leaveOnClose: boolean
  sink: SourceSink
  log: FastifyBaseLogger
  /** The previous reader's last hand-over (an abandoned one may still be delivering): the first one here waits for it. */
  after?: Promise<unknown>
}

/** Passed to MQTT.js instead of acknowledging: it goes on to the next packet and sends no ack. */
class NotTaken extends Error {}

/**
 * One MQTT connection that hands each message to the sink and acknowledges
 * it only once the hub took it.
 *
 * MQTT.js reads one packet at a time: it calls `handleMessage` and neither
 * acknowledges nor reads the next packet until that calls back. So holding
 * the callback while the hub is paused is the flow control, and order is
 * kept without a queue of our own. At QoS 2 the PUBREC goes out before
 * `handleMessage` (on PUBREL), so there the hand-over happens earlier, in
 * `customHandleAcks`, which gates the PUBREC.
 */
export class MqttReader {
  readonly #options: MqttReaderOptions
  readonly #client: MqttClient
  /** Connections that closed so far: an ack belongs to the connection its packet came on, and is never sent on a later one. */
  #generation = 0
  /** Takes run one after another, across connections too (an old connection's last deliver may still be running). */
  #chain: Promise<unknown>
  #stopping = false
  #abandoned = false
  /** Set as the client is ended: no callback of MQTT.js's is called after. */
  #ended = false
  #stop: () => void = () => {}
  readonly #stopped = new Promise<void>((resolve) => { this.#stop = resolve })
  /** Settles once: subscribed (or a message arrived), or the first failure before that. */
  #firstOutcome: ((err?: unknown) => void) | null = null
  readonly #opened: Promise<void>
  #lastError: unknown
  #closed: Promise<void> | null = null
  #retry: NodeJS.Timeout | undefined

  constructor (options: MqttReaderOptions) {
    this.#options = options
    this.#chain = options.after ?? Promise.resolve()
    this.#opened = new Promise<void>((resolve, reject) => {
      this.#firstOutcome = (err) => {
        this.#firstOutcome = null
        if (err === undefined) resolve()
        else reject(err)
      }
    })
    // Reported through `sink.connected` as well: nobody has to await this one.
    this.#opened.catch(() => {})
    this.#client = connect(options.url, {
      ...options.client,
      customHandleAcks: (_topic: string, _message: Buffer, packet: IPublishPacket, done: (code: Error | number) => void) => {
        if (packet.qos !== 2) return done(0)
        this.#handOver(packet, (err) => { done(err ?? 0) })
      }
    })
    this.#client.handleMessage = (packet, done) => {
      // QoS 2 was handed over before its PUBREC.
      if (packet.qos === 2) return done()
      this.#handOver(packet, done)
    }
    this.#client.on('connect', (connack) => { this.#subscribe(connack) })
    this.#client.on('close', () => {
      this.#generation++
      this.#down()
    })
    this.#client.on('offline', () => { this.#down() })
    this.#client.on('error', (err) => {
      if (err instanceof NotTaken) return
      this.#lastError = err
      if (!this.#client.connected) this.#down()
      else options.log.warn({ err }, 'ws-hub: MQTT source client error')
    })
  }

  /** Resolves once the subscriptions are confirmed; rejects on the first failure before that (the client goes on retrying). */
  async opened (): Promise<void> {
    await this.#opened
  }

  /** Resolves once no hand-over is running. */
  async idle (): Promise<void> {
    await this.#chain
  }

  /** Stops taking messages, lets the one in flight finish and be acknowledged, leaves (when asked) and disconnects. Idempotent. */
  async close (): Promise<void> {
    this.#closed ??= this.#shutDown()
    await this.#closed
  }

  /**
   * Stops at once, acknowledging nothing more (a lost lease: another
   * instance reads now). What was not acknowledged the broker sends again.
   */
  async abandon (): Promise<void> {
    this.#abandoned = true
    this.#stopping = true
    this.#stop()
    clearTimeout(this.#retry)
    this.#ended = true
    this.#closed ??= this.#client.endAsync(true)
    await this.#closed
  }

  async #shutDown (): Promise<void> {
    this.#stopping = true
    this.#stop()
    clearTimeout(this.#retry)
    await this.#chain
    const client = this.#client
    if (this.#options.leaveOnClose && client.connected) {
      try {
        await withTimeout(client.unsubscribeAsync([...this.#options.filters]), CLOSE_TIMEOUT_MS)
      } catch (err) {
        this.#options.log.warn({ err }, 'ws-hub: MQTT source could not leave its shared subscriptions on close; the broker gives this session its share until it expires')
      }
    }
    this.#ended = true
    await endClient(client)
  }

  /** Hands one packet to the sink in its turn; `done()` acknowledges it, `done(err)` goes on without an ack. */
  #handOver (packet: IPublishPacket, done: (err?: Error) => void): void {
    // A message is reading, even before the SUBACK: a resumed session's
    // messages come first, and one held for a paused hub holds the SUBACK.
    if (!this.#stopping) this.#reading()
    const generation = this.#generation
    const turn = this.#chain.then(async () => await this.#take(packet, generation))
    this.#chain = turn.then((taken) => {
      this.#settle(generation, done, taken)
    }, (err: unknown) => {
      this.#options.log.error({ err, topic: packet.topic }, 'ws-hub: MQTT source could not hand a message to the hub; it is not acknowledged')
      this.#settle(generation, done, false)
    })
  }

  /**
   * Acknowledges, or goes on without an ack. Not at all once the client
   * ended or the packet's connection is gone: that connection reads no
   * more, and MQTT.js would go on with packets it still held against
   * stores already closed.
   */
  #settle (generation: number, done: (err?: Error) => void, taken: boolean): void {
    if (this.#ended || generation !== this.#generation) return
    if (taken) done()
    else done(new NotTaken('not taken by the hub: the broker sends it again'))
  }

  /** Delivers until the hub takes it; false when it must not be acknowledged (closing, its connection gone, the lease lost). */
  async #take (packet: IPublishPacket, generation: number): Promise<boolean> {
    const sink = this.#options.sink
    const record = mqttRecord(packet)
    for (;;) {
      if (this.#stopping || sink.closing || this.#gone(generation)) return false
      const taken = await sink.deliver([record])
      // Taken, but the connection it came on is gone: the ack cannot be
      // sent, so the broker sends it again (a duplicate, never a loss).
      if (this.#gone(generation)) return false
      if (taken === 1) return true
      await Promise.race([sink.resumed(), this.#stopped])
    }
  }

  #gone (generation: number): boolean {
    return this.#abandoned || generation !== this.#generation
  }

  #subscribe (connack: IConnackPacket): void {
    const generation = this.#generation
    const { filters, qos, sink } = this.#options
    // Subscribed on every connect, session present or not: a session we
    // left on close is present with no subscriptions. Subscribing again to
    // the same filter only replaces it. rh 2: retained messages are not
    // sent on subscribe, as for shared subscriptions, so a reconnect does
    // not publish an old value again.
    const map = Object.fromEntries(filters.map((filter) => [filter, { qos, rh: 2 }]))
    this.#client.subscribeAsync(map).then(() => {
      if (generation !== this.#generation || this.#stopping) return
      this.#options.log.debug({ sessionPresent: connack.sessionPresent }, 'ws-hub: MQTT source subscribed')
      this.#reading()
    }, (err: unknown) => {
      if (generation !== this.#generation || this.#stopping) return
      const failure = new SourceError(`the broker refused the subscriptions ${filters.join(', ')}; trying again`, { cause: err })
      sink.connected(false, failure)
      this.#firstOutcome?.(failure)
      // Refused (not authorized yet, a quota) while the connection stays
      // up: MQTT.js retries connections, not subscriptions, so this does.
      this.#retry = setTimeout(() => {
        if (generation === this.#generation && !this.#stopping) this.#subscribe(connack)
      }, this.#options.client.reconnectPeriod ?? 1_000).unref()
    })
  }

  #reading (): void {
    this.#options.sink.connected(true)
    this.#firstOutcome?.()
  }

  #down (): void {
    if (this.#stopping) return
    const err = this.#lastError ?? new SourceError('the MQTT connection closed')
    this.#lastError = undefined
    this.#options.sink.connected(false, err)
    this.#firstOutcome?.(err)
  }
}

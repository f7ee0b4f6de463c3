import { OptionsError, SourceError } from '../../errors.js'
import type { MqttSourceConfig } from '../../options/source-options.js'
import type { Lease } from '../leases/lease.js'
import type { MqttSourceRecord } from '../records.js'
import type { BadRecordReason, SourceConsumer, SourceContext, SourceRecord, SourceSink } from '../source.js'
import { clientIdOf, clientOptions } from './client-options.js'
import { DeadLetters } from './dead-letters.js'
import { MqttReader } from './mqtt-reader.js'
import { filterMatches } from './topic-filter.js'

/**
 * An MQTT 5 source. By default every hub instance joins the shared
 * subscriptions `$share/<group>/<filter>`, so the broker gives each message
 * to one of them. With `ordered`, one instance at a time reads, holding a
 * lease, with plain subscriptions.
 *
 * The order `ordered` keeps: MQTT keeps the order of one publisher's
 * messages on one topic, at QoS 1 and 2, to one subscriber. A shared
 * subscription spreads consecutive messages over several instances, which
 * publish them concurrently; one reader hands them to the hub one by one,
 * so each publisher's order on each topic is what the clients see. Messages
 * of different publishers or topics have no order MQTT promises.
 */
export class MqttSource implements SourceConsumer {
  readonly #config: MqttSourceConfig
  readonly #context: SourceContext
  readonly #clientId: string
  #sink: SourceSink | null = null
  #reader: MqttReader | null = null
  /** The last reader's hand-overs: an abandoned reader's deliver may still run, and the next reader waits for it, so the runner never gets two at once. */
  #previous: Promise<void> = Promise.resolve()
  #deadLetters: DeadLetters | null = null
  #lease: Lease | null = null
  readonly #stopTurns = new AbortController()
  #turns: Promise<void> | null = null
  /** Ends the current turn of an `ordered` source (the lease was lost). */
  #turnEnded: (() => void) | null = null
  #closed: Promise<void> | null = null
  readonly deadLetter?: (record: SourceRecord, reason: BadRecordReason) => Promise<void>

  constructor (config: MqttSourceConfig, context: SourceContext) {
    const topic = config.deadLetter?.topic
    const loop = topic === undefined ? undefined : config.subscriptions.find((filter) => filterMatches(filter, topic))
    if (loop !== undefined) {
      throw new OptionsError(`fastify-ws-hub: option "sources[${context.name}].deadLetter.topic": ${JSON.stringify(topic)} is matched by the subscription ${JSON.stringify(loop)}, so the source would read its own dead letters`)
    }
    this.#config = config
    this.#context = context
    this.#clientId = clientIdOf(config, context)
    if (topic !== undefined) this.deadLetter = async (record, reason) => { await this.#deadLetter(record, reason) }
  }

  async start (sink: SourceSink): Promise<void> {
    if (this.#sink !== null) throw new SourceError(`source ${this.#context.name} was started twice`)
    this.#sink = sink
    const topic = this.#config.deadLetter?.topic
    if (topic !== undefined) {
      // Its own client id: the reader's is the session's (and, ordered, the group's).
      const options = clientOptions(this.#config, `${this.#clientId}-dead-letters${this.#config.ordered ? `-${this.#context.instanceId}` : ''}`)
      this.#deadLetters = new DeadLetters(this.#config.url, options, topic)
    }
    if (!this.#config.ordered) {
      this.#reader = this.#open(sink, true)
      await this.#reader.opened()
      return
    }
    this.#lease = this.#context.lease(`mqtt:${this.#config.group}:${this.#context.name}`)
    this.#lease.onLost(() => { this.#lost() })
    // Waiting for the lease is health, not an outage: `active()` says this
    // instance is the standby.
    sink.connected(true)
    this.#turns = this.#takeTurns(this.#lease, sink)
  }

  async lag (): Promise<number | null> {
    // MQTT has no way to ask the broker how many messages wait for a session.
    return null
  }

  active (): boolean {
    return this.#lease === null ? this.#sink !== null : this.#lease.held() && this.#reader !== null
  }

  /** Lets an in-flight deliver finish and be acknowledged, then disconnects and, when `ordered`, gives up the lease. Idempotent. */
  async close (): Promise<void> {
    this.#closed ??= this.#shutDown()
    await this.#closed
  }

  async #shutDown (): Promise<void> {
    this.#stopTurns.abort()
    await this.#reader?.close()
    this.#reader = null
    // After the reader: its last deliver may still send a dead letter.
    await this.#deadLetters?.close()
    // The lease goes last: the next holder connects with the same client
    // id, which would cut this connection off before its last ack.
    await this.#turns
    await this.#lease?.release()
  }

  /** An `ordered` source: read while holding the lease, wait for it otherwise. */
  async #takeTurns (lease: Lease, sink: SourceSink): Promise<void> {
    const signal = this.#stopTurns.signal
    while (await lease.acquire(signal)) {
      if (signal.aborted) return
      const reader = this.#open(sink, false)
      this.#reader = reader
      this.#context.log.info({ clientId: this.#clientId }, `ws-hub: MQTT source ${this.#context.name} holds its lease and reads`)
      reader.opened().catch(() => {}) // reported through sink.connected
      await new Promise<void>((resolve) => {
        const end = (): void => {
          signal.removeEventListener('abort', end)
          this.#turnEnded = null
          resolve()
        }
        this.#turnEnded = end
        signal.addEventListener('abort', end, { once: true })
      })
      if (signal.aborted) return
    }
  }

  /** The lease was lost (not renewed in time, taken over): another instance reads now, so stop at once. */
  #lost (): void {
    // Closing: the reader is already being closed, its last ack sent.
    if (this.#stopTurns.signal.aborted) return
    const reader = this.#reader
    this.#reader = null
    if (reader === null) return
    this.#context.log.warn({ clientId: this.#clientId }, `ws-hub: MQTT source ${this.#context.name} lost its lease; it stops reading and waits for it again`)
    this.#previous = reader.idle()
    reader.abandon().catch((err: unknown) => { this.#context.log.warn({ err }, 'ws-hub: MQTT source could not drop its connection after losing its lease') })
    this.#sink?.connected(true)
    this.#turnEnded?.()
  }

  #open (sink: SourceSink, shared: boolean): MqttReader {
    const config = this.#config
    return new MqttReader({
      url: config.url,
      client: clientOptions(config, this.#clientId),
      filters: config.subscriptions.map((filter) => shared ? `$share/${config.group}/${filter}` : filter),
      qos: config.qos,
      // An ordered source's session is the group's: the next holder
      // resumes it, subscriptions and all.
      leaveOnClose: shared,
      sink,
      log: this.#context.log,
      after: this.#previous
    })
  }

  async #deadLetter (record: SourceRecord, reason: BadRecordReason): Promise<void> {
    if (this.#deadLetters === null) throw new SourceError('the MQTT source is not started; the dead letter is sent again')
    // The runner hands back the records this source made.
    await this.#deadLetters.publish(record.raw as MqttSourceRecord, reason)
  }
}

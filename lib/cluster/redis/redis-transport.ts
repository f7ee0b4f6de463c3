import type { FastifyBaseLogger } from 'fastify'
import type { Redis } from 'ioredis'
import { decodeEnvelope, encodeEnvelope, type Envelope, type Target } from '../envelope.js'
import type { Broker, BrokerState, EnvelopeHandler, PublishOptions } from '../transport.js'
import type { RedisBrokerOptions } from '../../options/hub-options.js'
import { checkSource, closeConnection, describeSource, openConnection, type RedisSource } from './connect.js'

/** Default for `channelPrefix`. */
export const DEFAULT_CHANNEL_PREFIX = 'ws-hub:'

export class BrokerError extends Error {
  override name = 'BrokerError'
}

/**
 * Redis pub/sub between hub instances: one channel every instance reads
 * (`<prefix>all`) and one per instance (`<prefix>inst:<instanceId>`) for
 * envelopes whose holders the registry knows.
 *
 * Delivery is at most once. While Redis is unreachable, `publish` rejects at
 * once (nothing is queued to be sent minutes later) and envelopes from other
 * instances are missed; a publish whose reply was lost is never re-sent, so
 * nothing is delivered twice. The connections reconnect forever with capped
 * backoff, and `state()` is 'up' only when both are ready and Redis has
 * confirmed the subscriptions again.
 *
 * It opens two connections (Redis needs a dedicated one for subscribing),
 * from `url` or as duplicates of the user's `client`, and `close` closes
 * exactly those two; the user's client is never closed or reconfigured.
 */
export class RedisBroker implements Broker {
  readonly #source: RedisSource
  readonly #log: FastifyBaseLogger
  readonly #prefix: string
  #pub: Redis | null = null
  #sub: Redis | null = null
  #instanceId: string | null = null
  #started = false
  #subscribed = false
  #reported: BrokerState | null = null
  #lastError: unknown = undefined
  #closing: Promise<void> | null = null

  constructor (options: RedisBrokerOptions, log: FastifyBaseLogger) {
    this.#source = checkSource(options, 'broker')
    this.#prefix = options.channelPrefix ?? DEFAULT_CHANNEL_PREFIX
    this.#log = log
  }

  /** Connects both connections and resolves once Redis confirmed both subscriptions. */
  async start (instanceId: string, handler: EnvelopeHandler): Promise<void> {
    if (this.#closing !== null) throw new BrokerError('RedisBroker: start() called after close()')
    if (this.#instanceId !== null) throw new BrokerError(`RedisBroker: already started as instance ${this.#instanceId}`)
    this.#instanceId = instanceId
    const channels = [this.#allChannel(), this.#instanceChannel(instanceId)]
    const pub = openConnection(this.#source, `ws-hub:broker:pub:${instanceId}`)
    const sub = openConnection(this.#source, `ws-hub:broker:sub:${instanceId}`)
    this.#pub = pub
    this.#sub = sub

    for (const connection of [pub, sub]) {
      // Without an 'error' listener ioredis prints every failed reconnect;
      // the error is reported with the state change it causes.
      connection.on('error', (err: unknown) => { this.#lastError = err })
      connection.on('ready', () => this.#report())
      connection.on('close', () => {
        if (connection === sub) this.#subscribed = false
        this.#report()
      })
    }
    sub.on('ready', () => {
      if (this.#started && this.#closing === null) this.#resubscribe(sub, channels)
    })
    sub.on('message', (channel: string, text: string) => this.#receive(channel, text, instanceId, handler))

    try {
      await Promise.all([pub.connect(), sub.connect()])
      await sub.subscribe(...channels)
    } catch (err) {
      // A failed start leaves no reconnect loop behind to keep the process alive.
      await this.close()
      throw new BrokerError(`RedisBroker: could not subscribe to ${channels.join(', ')} on ${describeSource(this.#source)}`, { cause: err })
    }
    this.#subscribed = true
    this.#started = true
    this.#report()
  }

  async publish (envelope: Envelope, options: PublishOptions = {}): Promise<void> {
    const pub = this.#pub
    if (this.#closing !== null) throw new BrokerError('RedisBroker: publish() called after close()')
    if (pub === null || !this.#started) throw new BrokerError('RedisBroker: publish() called before start() resolved')
    // A repeated instance would get the envelope twice.
    const channels = options.instances === undefined
      ? [this.#allChannel()]
      : [...new Set(options.instances)].map((id) => this.#instanceChannel(id))
    if (channels.length === 0) return
    if (pub.status !== 'ready') {
      throw new BrokerError(`RedisBroker: Redis is unreachable (publisher ${pub.status}); envelope for ${describeTarget(envelope.target)} not sent to ${channels.join(', ')}`, { cause: this.#lastError })
    }
    const text = encodeEnvelope(envelope)
    const results = await Promise.allSettled(channels.map(async (channel) => pub.publish(channel, text)))
    const failed: string[] = []
    let cause: unknown
    results.forEach((result, index) => {
      if (result.status === 'rejected') {
        failed.push(channels[index] ?? '?')
        cause ??= result.reason
      }
    })
    if (failed.length > 0) {
      throw new BrokerError(`RedisBroker: publishing the envelope for ${describeTarget(envelope.target)} failed on ${failed.length} of ${channels.length} channels (${failed.join(', ')})`, { cause })
    }
  }

  state (): BrokerState {
    const up = this.#started && this.#closing === null && this.#subscribed &&
      this.#pub?.status === 'ready' && this.#sub?.status === 'ready'
    return up ? 'up' : 'down'
  }

  /** Idempotent; closes the two connections the broker opened. */
  close (): Promise<void> {
    this.#closing ??= this.#shutdown()
    return this.#closing
  }

  async #shutdown (): Promise<void> {
    const connections = [this.#sub, this.#pub].filter((c): c is Redis => c !== null)
    await Promise.all(connections.map(closeConnection))
  }

  #allChannel (): string {
    return `${this.#prefix}all`
  }

  #instanceChannel (instanceId: string): string {
    return `${this.#prefix}inst:${instanceId}`
  }

  #receive (channel: string, text: string, instanceId: string, handler: EnvelopeHandler): void {
    if (this.#closing !== null) return
    let envelope: Envelope
    try {
      envelope = decodeEnvelope(text)
    } catch (err) {
      this.#log.warn({ err, channel, bytes: Buffer.byteLength(text) }, 'ws-hub: malformed envelope on a Redis channel dropped')
      return
    }
    if (envelope.origin === instanceId) return
    // A throw here would unwind into ioredis's reply parser.
    try {
      handler(envelope)
    } catch (err) {
      this.#log.error({ err, channel, origin: envelope.origin, target: envelope.target }, 'ws-hub: handling an envelope from Redis failed')
    }
  }

  #resubscribe (sub: Redis, channels: string[]): void {
    sub.subscribe(...channels).then(() => {
      this.#subscribed = true
      this.#report()
    }, (err: unknown) => {
      if (this.#closing !== null) return
      this.#lastError = err
      this.#log.error({ err, channels }, 'ws-hub: Redis broker could not resubscribe after reconnecting; reconnecting again')
      // A connection without its subscriptions would look healthy and
      // receive nothing; dropping it makes the next 'ready' try again.
      sub.disconnect(true)
    })
  }

  /** Logs each change of state once: warn with the cause going down, info coming up. */
  #report (): void {
    if (!this.#started || this.#closing !== null) return
    const state = this.state()
    if (state === this.#reported) return
    this.#reported = state
    if (state === 'up') {
      this.#lastError = undefined
      this.#log.info({ channelPrefix: this.#prefix, instanceId: this.#instanceId }, 'ws-hub: Redis broker up')
      return
    }
    const err = this.#lastError ?? new BrokerError('RedisBroker: connection to Redis closed')
    this.#log.warn({ err, publisher: this.#pub?.status, subscriber: this.#sub?.status, instanceId: this.#instanceId },
      'ws-hub: Redis broker down; envelopes to and from other instances are dropped until it reconnects')
  }
}

function describeTarget (target: Target): string {
  switch (target.kind) {
    case 'all': return 'all clients'
    case 'client': return `client ${target.id}`
    case 'user': return `user ${target.userId}`
    case 'topic': return `topic ${target.topic}`
  }
}

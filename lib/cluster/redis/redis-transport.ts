import type { FastifyBaseLogger } from 'fastify'
import type { Redis } from 'ioredis'
import { TransportError } from '../../errors.js'
import { DEFAULT_MAX_ENVELOPE_AGE_MS, decodeEnvelope, encodeEnvelope, untilStale, type Envelope, type Target } from '../envelope.js'
import type { EnvelopeHandler, Transport, TransportContext, TransportState } from '../transport.js'
import { checkSource, closeConnection, describeSource, openConnection, type SingleRedisSource } from './connect.js'
import { BACKEND_DEFAULTS } from '../../options/backend-options.js'

/** Default for `channelPrefix`. */
export const DEFAULT_CHANNEL_PREFIX = BACKEND_DEFAULTS.redisBroker.channelPrefix

export interface RedisTransportOptions {
  /** Exactly one of `url` (the transport opens its own connections) and `client` (duplicated, never closed). */
  url?: string
  client?: Redis
  /** Prefix of every channel name, so several hubs can share one Redis. Default `ws-hub:`. */
  channelPrefix?: string
}

/**
 * Every channel name the transport uses, built here and nowhere else, so
 * moving to Redis Cluster sharded pub/sub (where a channel's name picks its
 * shard) is a change of layout, not of the transport.
 */
export interface ChannelLayout {
  /** Envelopes for every instance: broadcasts, and anything without `to` that is not for a topic. */
  all: string
  /** Envelopes published with `to` listing this instance. */
  instance: (instanceId: string) => string
  /** Deliver envelopes to a topic, published without `to`. */
  topic: (topic: string) => string
  /** The topic a channel carries, or undefined for the other channels. */
  topicOf: (channel: string) => string | undefined
}

export function channelLayout (prefix: string): ChannelLayout {
  const topicPrefix = `${prefix}topic:`
  return {
    all: `${prefix}all`,
    instance: (instanceId) => `${prefix}inst:${instanceId}`,
    topic: (topic) => topicPrefix + topic,
    topicOf: (channel) => channel.startsWith(topicPrefix) ? channel.slice(topicPrefix.length) : undefined
  }
}

/**
 * Redis pub/sub between hub instances: one channel every instance reads, one
 * per instance for envelopes published `to` it, and one per topic that only
 * the instances subscribed to that topic read (see `channelLayout`).
 *
 * Delivery is at most once. While Redis is unreachable, `publish` rejects at
 * once (nothing is queued to be sent minutes later) and envelopes from other
 * instances are missed; a publish whose reply was lost is never re-sent, so
 * nothing is delivered twice, and it rejects only once it is older than
 * `maxEnvelopeAgeMs`, so one reported failed is never handled afterwards. The connections reconnect forever with capped
 * backoff; the topics this instance subscribed to are kept, even when their
 * `subscribe` rejected, and subscribed again on every reconnect. `state()` is
 * 'up' only when both connections are ready and Redis has confirmed every
 * subscription again.
 *
 * It opens two connections (Redis needs a dedicated one for subscribing),
 * from `url` or as duplicates of the user's `client`, and `close` closes
 * exactly those two; the user's client is never closed or reconfigured.
 */
export class RedisTransport implements Transport {
  readonly #source: SingleRedisSource
  readonly #log: FastifyBaseLogger
  readonly #prefix: string
  readonly #channels: ChannelLayout
  /** Topics this instance wants, whether or not Redis has confirmed them yet. */
  readonly #topics = new Set<string>()
  #pub: Redis | null = null
  #sub: Redis | null = null
  #instanceId: string | null = null
  #started = false
  #subscribed = false
  #reported: TransportState | null = null
  #lastError: unknown = undefined
  #closing: Promise<void> | null = null
  #maxEnvelopeAgeMs = DEFAULT_MAX_ENVELOPE_AGE_MS

  constructor (options: RedisTransportOptions, log: FastifyBaseLogger) {
    this.#source = checkSource(options, 'broker')
    this.#prefix = options.channelPrefix ?? DEFAULT_CHANNEL_PREFIX
    this.#channels = channelLayout(this.#prefix)
    this.#log = log
  }

  /** Connects both connections and resolves once Redis confirmed this instance's two channels. */
  async start (instanceId: string, onEnvelope: EnvelopeHandler, context?: TransportContext): Promise<void> {
    if (this.#closing !== null) throw new TransportError('RedisTransport: start() called after close()')
    if (this.#instanceId !== null) throw new TransportError(`RedisTransport: already started as instance ${this.#instanceId}`)
    this.#instanceId = instanceId
    this.#maxEnvelopeAgeMs = context?.maxEnvelopeAgeMs ?? DEFAULT_MAX_ENVELOPE_AGE_MS
    const own = [this.#channels.all, this.#channels.instance(instanceId)]
    const pub = openConnection(this.#source, `ws-hub:transport:pub:${instanceId}`)
    const sub = openConnection(this.#source, `ws-hub:transport:sub:${instanceId}`)
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
      if (this.#started && this.#closing === null) this.#resubscribe(sub, own)
    })
    sub.on('message', (channel: string, text: string) => this.#receive(channel, text, instanceId, onEnvelope))

    try {
      await Promise.all([pub.connect(), sub.connect()])
      await sub.subscribe(...own)
    } catch (err) {
      // A failed start leaves no reconnect loop behind to keep the process alive.
      await this.close()
      throw new TransportError(`RedisTransport: could not subscribe to ${own.join(', ')} on ${describeSource(this.#source)}`, { cause: err })
    }
    this.#subscribed = true
    this.#started = true
    this.#report()
  }

  async publish (envelope: Envelope, to?: readonly string[]): Promise<void> {
    const pub = this.#pub
    if (this.#closing !== null) throw new TransportError('RedisTransport: publish() called after close()')
    if (pub === null || !this.#started) throw new TransportError('RedisTransport: publish() called before start() resolved')
    const channels = routeEnvelope(this.#channels.all, this.#channels, envelope, to)
    if (channels.length === 0) return
    if (pub.status !== 'ready') {
      throw new TransportError(`RedisTransport: Redis is unreachable (publisher ${pub.status}); ${describeEnvelope(envelope)} not sent to ${channels.join(', ')}`, { cause: this.#lastError })
    }
    const sentAt = envelope.sentAt ?? Date.now()
    const text = encodeEnvelope(envelope, sentAt)
    const results = await Promise.allSettled(channels.map(async (channel) => pub.publish(channel, text)))
    const failed: string[] = []
    let cause: unknown
    let unknown = false
    results.forEach((result, index) => {
      if (result.status === 'rejected') {
        failed.push(channels[index] ?? '?')
        cause ??= result.reason
        unknown ||= !isRefusal(result.reason)
      }
    })
    if (failed.length === 0) return
    if (unknown) {
      // A timed-out PUBLISH, or one written before its connection dropped,
      // may still run when Redis reads it (a frozen server runs everything
      // it buffered when it resumes). Rejecting only once every receiver
      // drops it as stale keeps "failed" true: it is never delivered after.
      await untilStale(sentAt, this.#maxEnvelopeAgeMs)
    }
    throw new TransportError(`RedisTransport: publishing ${describeEnvelope(envelope)} failed on ${failed.length} of ${channels.length} channels (${failed.join(', ')})${unknown ? `; reported once older than maxEnvelopeAgeMs (${this.#maxEnvelopeAgeMs} ms), from when no instance handles it` : ''}`, { cause })
  }

  /**
   * Resolves once Redis confirmed the topic's channel. Rejects while Redis is
   * unreachable, but the topic is kept and subscribed on reconnect.
   */
  async subscribe (topic: string): Promise<void> {
    const sub = this.#sub
    if (this.#closing !== null) throw new TransportError('RedisTransport: subscribe() called after close()')
    if (sub === null || !this.#started) throw new TransportError('RedisTransport: subscribe() called before start() resolved')
    this.#topics.add(topic)
    const channel = this.#channels.topic(topic)
    if (sub.status !== 'ready') {
      throw new TransportError(`RedisTransport: Redis is unreachable (subscriber ${sub.status}); topic "${topic}" will be subscribed when it returns`, { cause: this.#lastError })
    }
    try {
      await sub.subscribe(channel)
    } catch (err) {
      // Still 'ready' means the server or a timeout refused it, and no
      // reconnect is coming to retry; dropping the connection brings one.
      if (this.#closing === null && sub.status === 'ready' && this.#topics.has(topic)) this.#reconnect(sub)
      throw new TransportError(`RedisTransport: subscribing to ${channel} failed; it is retried on reconnect`, { cause: err })
    }
  }

  /**
   * Delivery stops at once (envelopes still arriving on the channel are
   * dropped on receipt); resolves once Redis confirmed, or at once while it is
   * unreachable, since the reconnect will not subscribe the topic again.
   */
  async unsubscribe (topic: string): Promise<void> {
    if (!this.#topics.delete(topic)) return
    const sub = this.#sub
    if (sub === null || this.#closing !== null || sub.status !== 'ready') return
    const channel = this.#channels.topic(topic)
    try {
      await sub.unsubscribe(channel)
    } catch (err) {
      throw new TransportError(`RedisTransport: unsubscribing from ${channel} failed; its envelopes are dropped on receipt`, { cause: err })
    }
  }

  state (): TransportState {
    const up = this.#started && this.#closing === null && this.#subscribed &&
      this.#pub?.status === 'ready' && this.#sub?.status === 'ready'
    return up ? 'up' : 'down'
  }

  /** Idempotent; closes the two connections the transport opened. */
  close (): Promise<void> {
    this.#closing ??= this.#shutdown()
    return this.#closing
  }

  async #shutdown (): Promise<void> {
    const connections = [this.#sub, this.#pub].filter((c): c is Redis => c !== null)
    await Promise.all(connections.map(closeConnection))
  }

  #receive (channel: string, text: string, instanceId: string, onEnvelope: EnvelopeHandler): void {
    if (this.#closing !== null) return
    // An UNSUBSCRIBE not yet confirmed, or one that failed, still lets these in.
    const topic = this.#channels.topicOf(channel)
    if (topic !== undefined && !this.#topics.has(topic)) return
    receiveEnvelope(this.#log, channel, text, instanceId, onEnvelope)
  }

  #resubscribe (sub: Redis, own: string[]): void {
    const channels = [...own, ...[...this.#topics].map((topic) => this.#channels.topic(topic))]
    sub.subscribe(...channels).then(() => {
      this.#subscribed = true
      this.#report()
    }, (err: unknown) => {
      if (this.#closing !== null) return
      this.#lastError = err
      this.#log.error({ err, channels: channels.length, topics: this.#topics.size }, 'ws-hub: Redis transport could not resubscribe after reconnecting; reconnecting again')
      this.#reconnect(sub)
    })
  }

  // A connection missing some of its subscriptions would look healthy and
  // miss envelopes; dropping it makes the next 'ready' subscribe everything.
  #reconnect (sub: Redis): void {
    this.#subscribed = false
    this.#report()
    sub.disconnect(true)
  }

  /** Logs each change of state once: warn with the cause going down, info coming up. */
  #report (): void {
    if (!this.#started || this.#closing !== null) return
    const state = this.state()
    if (state === this.#reported) return
    this.#reported = state
    if (state === 'up') {
      this.#lastError = undefined
      this.#log.info({ channelPrefix: this.#prefix, instanceId: this.#instanceId, topics: this.#topics.size }, 'ws-hub: Redis transport up')
      return
    }
    const err = this.#lastError ?? new TransportError('RedisTransport: connection to Redis closed')
    this.#log.warn({ err, publisher: this.#pub?.status, subscriber: this.#sub?.status, instanceId: this.#instanceId },
      'ws-hub: Redis transport down; envelopes to and from other instances are dropped until it reconnects')
  }
}

/**
 * The channels an envelope goes to: the instances in `to` (each once), else
 * a topic's channel for a topic delivery, else `all` (the channel this
 * instance broadcasts on). Shared by the single-Redis and cluster transports.
 */
export function routeEnvelope (all: string, channels: Pick<ChannelLayout, 'instance' | 'topic'>, envelope: Envelope, to: readonly string[] | undefined): string[] {
  // A repeated instance would get the envelope twice.
  if (to !== undefined) return [...new Set(to)].map((id) => channels.instance(id))
  if (envelope.type === 'deliver' && envelope.target.kind === 'topic') return [channels.topic(envelope.target.topic)]
  return [all]
}

/**
 * Decodes a message from a Redis channel and hands it to the hub: malformed
 * ones are logged and dropped, the instance's own are skipped, and a throwing
 * handler is logged (a throw would unwind into ioredis's reply parser).
 */
export function receiveEnvelope (log: FastifyBaseLogger, channel: string, text: string, instanceId: string, onEnvelope: EnvelopeHandler): void {
  let envelope: Envelope
  try {
    envelope = decodeEnvelope(text)
  } catch (err) {
    log.warn({ err, channel, bytes: Buffer.byteLength(text) }, 'ws-hub: malformed envelope on a Redis channel dropped')
    return
  }
  if (envelope.origin === instanceId) return
  try {
    onEnvelope(envelope)
  } catch (err) {
    log.error({ err, channel, origin: envelope.origin, type: envelope.type }, 'ws-hub: handling an envelope from Redis failed')
  }
}

/** An error reply: Redis read the command and did not run it. Anything else leaves its fate unknown. */
export function isRefusal (err: unknown): boolean {
  return err instanceof Error && err.name === 'ReplyError'
}

/** An envelope in words, for errors: what it is and who it is for. */
export function describeEnvelope (envelope: Envelope): string {
  switch (envelope.type) {
    case 'deliver': return `a deliver envelope for ${describeTarget(envelope.target)}`
    case 'close': return `a close envelope for ${describeTarget(envelope.target)}`
    case 'query': return `query ${envelope.requestId}`
    case 'reply': return `the reply to ${envelope.requestId}`
    case 'subscribe':
    case 'unsubscribe': return `${envelope.type} of ${describeTarget(envelope.target)} to topic ${envelope.topic}`
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

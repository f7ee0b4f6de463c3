import type { FastifyBaseLogger } from 'fastify'
import type { Cluster, Redis } from 'ioredis'
import { OptionsError, TransportError } from '../../errors.js'
import { DEFAULT_MAX_ENVELOPE_AGE_MS, encodeEnvelope, untilStale, type Envelope } from '../envelope.js'
import type { EnvelopeHandler, Transport, TransportContext, TransportState } from '../transport.js'
import { DEFAULT_CHANNEL_PREFIX, describeEnvelope, isRefusal, receiveEnvelope, routeEnvelope } from './redis-transport.js'
import { openCluster } from './cluster/connect-cluster.js'
import { closeConnection, describeSource, RECONNECT_BASE_MS, RECONNECT_MAX_MS, type RedisClusterSource } from './connect.js'
import { crc16, keySlot } from './cluster/slot.js'

/**
 * Channels broadcasts are spread over. Every instance reads all of them and
 * each publishes on one (picked by its id), so broadcasts are not all on one
 * shard: a few times the masters of a typical cluster, so each master gets
 * some, while a new instance still subscribes in one round of 16 commands.
 */
export const BROADCAST_STRIPES = 16

export interface RedisClusterTransportOptions {
  cluster: RedisClusterSource
  /** Given too: an OptionsError (a transport talks to one Redis or one cluster). */
  url?: string | undefined
  client?: Redis | undefined
  /** Prefix of every channel name. Default `ws-hub:`; no `{` or `}` (it would be taken as the hash tag). */
  channelPrefix?: string
}

/**
 * Every channel name on a cluster. The variable part is the hash tag, so a
 * channel's slot (and shard) depends on the topic, instance or stripe alone:
 *
 *   <prefix>topic:{<topic>}   a topic's envelopes; the same slot as its
 *                             history keys (`history:{<topic>}:*`)
 *   <prefix>inst:{<id>}       envelopes published `to` one instance
 *   <prefix>all:{<s>}         broadcasts, s = 0..BROADCAST_STRIPES-1
 */
export interface ClusterChannelLayout {
  /** Every broadcast stripe; each instance reads them all. */
  stripes: readonly string[]
  /** The stripe an instance publishes its broadcasts on: one per origin, so they keep their order. */
  stripeOf: (instanceId: string) => string
  instance: (instanceId: string) => string
  topic: (topic: string) => string
  topicOf: (channel: string) => string | undefined
}

export function clusterChannelLayout (prefix: string, stripes = BROADCAST_STRIPES): ClusterChannelLayout {
  const topicPrefix = `${prefix}topic:{`
  const all = Array.from({ length: stripes }, (_, s) => `${prefix}all:{${s}}`)
  return {
    stripes: all,
    stripeOf: (instanceId) => all[crc16(Buffer.from(instanceId)) % stripes] ?? `${prefix}all:{0}`,
    instance: (instanceId) => `${prefix}inst:{${instanceId}}`,
    topic: (topic) => `${topicPrefix}${topic}}`,
    topicOf: (channel) => channel.startsWith(topicPrefix) && channel.endsWith('}') ? channel.slice(topicPrefix.length, -1) : undefined
  }
}

/**
 * Redis Cluster sharded pub/sub between hub instances (SSUBSCRIBE and
 * SPUBLISH, Redis 7): a topic's envelopes go to the master that serves the
 * topic's channel and reach only the instances subscribed to it; see
 * `clusterChannelLayout` for the channels. One ioredis Cluster client holds a
 * connection per node for publishing and one subscriber connection per
 * master.
 *
 * Delivery is at most once, as with RedisTransport. Order is kept per origin
 * and channel (one connection to the channel's master); envelopes of one
 * origin on channels of different shards keep the order in which their
 * publishes resolved, not the order in which concurrent ones were made.
 *
 * Failover. A master that dies ends its connections: the channels it served
 * count as unconfirmed, publishes to them reject at once, and `state()` is
 * 'down'. ioredis reads the slot map again and moves its subscribers to the
 * new master, but does not confirm the resubscription; the transport
 * subscribes every unconfirmed channel again itself (at once, when ioredis
 * reports its subscribers ready, and with capped backoff until it succeeds)
 * and reports 'up' only once Redis confirmed every channel on the master
 * that now serves it. A publish whose fate is unknown (a master died with it
 * in flight) is never re-sent and rejects once stale, so nothing is
 * delivered twice.
 *
 * Not detected: a master that hangs without closing its sockets (SIGSTOP, a
 * black-holed network) looks up until the cluster fails it over and the next
 * slot refresh (every SLOTS_REFRESH_INTERVAL_MS) moves the subscribers;
 * publishes to it time out meanwhile.
 */
export class RedisClusterTransport implements Transport {
  readonly #source: RedisClusterSource
  readonly #log: FastifyBaseLogger
  readonly #prefix: string
  readonly #channels: ClusterChannelLayout
  readonly #topics = new Set<string>()
  /** Channel -> the master (`host:port`) on which Redis confirmed it. */
  readonly #confirmed = new Map<string, string>()
  /** Masters whose connection ended and that the slot map may still name. */
  readonly #lost = new Set<string>()
  readonly #slots = new Map<string, number>()
  #cluster: Cluster | null = null
  #instanceId: string | null = null
  #own: string[] = []
  #started = false
  #closing: Promise<void> | null = null
  #reported: TransportState | null = null
  #lastError: unknown = undefined
  #maxEnvelopeAgeMs = DEFAULT_MAX_ENVELOPE_AGE_MS
  #resyncing = false
  #again = false
  #attempts = 0
  #retry: NodeJS.Timeout | null = null

  constructor (options: RedisClusterTransportOptions, log: FastifyBaseLogger) {
    if (options.url !== undefined || options.client !== undefined) {
      throw new OptionsError(`fastify-ws-hub: option "broker" of type redis needs exactly one of "url", "client" or "cluster" (got cluster and ${options.url !== undefined ? 'url' : 'client'})`)
    }
    this.#prefix = options.channelPrefix ?? DEFAULT_CHANNEL_PREFIX
    if (/[{}]/.test(this.#prefix)) {
      throw new OptionsError(`fastify-ws-hub: option "broker.channelPrefix" may not contain "{" or "}" on a Redis Cluster: a hash tag in it would put every channel on one shard (got ${JSON.stringify(this.#prefix)})`)
    }
    this.#source = options.cluster
    this.#channels = clusterChannelLayout(this.#prefix)
    this.#log = log
  }

  /** Connects and resolves once every master confirmed this instance's channels (its own and the broadcast stripes). */
  async start (instanceId: string, onEnvelope: EnvelopeHandler, context?: TransportContext): Promise<void> {
    if (this.#closing !== null) throw new TransportError('RedisClusterTransport: start() called after close()')
    if (this.#instanceId !== null) throw new TransportError(`RedisClusterTransport: already started as instance ${this.#instanceId}`)
    this.#instanceId = instanceId
    this.#maxEnvelopeAgeMs = context?.maxEnvelopeAgeMs ?? DEFAULT_MAX_ENVELOPE_AGE_MS
    this.#own = [...this.#channels.stripes, this.#channels.instance(instanceId)]
    const cluster = openCluster(this.#source, `ws-hub:transport:${instanceId}`)
    this.#cluster = cluster

    // Without an 'error' listener an error event would throw; errors are
    // reported with the state change they cause.
    cluster.on('error', (err: unknown) => { this.#lastError = err })
    cluster.on('node error', (err: unknown) => { this.#lastError = err })
    cluster.on('nodeError', (err: unknown) => { this.#lastError = err })
    // A node connection or a subscriber ended (the pool's carry only the
    // connection, the subscribers' the node key too).
    cluster.on('-node', (redis: Redis | null, key?: string) => this.#nodeLost(key ?? nodeKey(redis)))
    // ioredis moved its subscribers to the current slot map (a master still
    // dead ends its new subscriber, and is lost again) and resubscribed
    // without waiting for Redis: confirm every channel ourselves.
    cluster.on('subscribersReady', () => {
      this.#lost.clear()
      this.#resync()
    })
    cluster.on('-subscriber', () => this.#report())
    cluster.on('ready', () => this.#resync())
    cluster.on('close', () => this.#report())
    cluster.on('smessage', (channel: string, text: string) => this.#receive(channel, text, instanceId, onEnvelope))

    try {
      await cluster.connect()
      await Promise.all(this.#own.map(async (channel) => this.#subscribeChannel(cluster, channel)))
    } catch (err) {
      await this.close()
      throw new TransportError(`RedisClusterTransport: could not subscribe to this instance's ${this.#own.length} channels on ${describeSource({ cluster: this.#source })}`, { cause: err })
    }
    this.#started = true
    this.#report()
  }

  async publish (envelope: Envelope, to?: readonly string[]): Promise<void> {
    const cluster = this.#cluster
    const instanceId = this.#instanceId
    if (this.#closing !== null) throw new TransportError('RedisClusterTransport: publish() called after close()')
    if (cluster === null || instanceId === null || !this.#started) throw new TransportError('RedisClusterTransport: publish() called before start() resolved')
    const channels = routeEnvelope(this.#channels.stripeOf(instanceId), this.#channels, envelope, to)
    if (channels.length === 0) return
    const unreachable = channels.filter((channel) => !this.#reachable(cluster, channel))
    if (unreachable.length > 0) {
      throw new TransportError(`RedisClusterTransport: the cluster is unreachable for ${unreachable.join(', ')} (cluster ${cluster.status}); ${describeEnvelope(envelope)} not sent`, { cause: this.#lastError })
    }
    const sentAt = envelope.sentAt ?? Date.now()
    const text = encodeEnvelope(envelope, sentAt)
    const results = await Promise.allSettled(channels.map(async (channel) => cluster.spublish(channel, text)))
    const failed: string[] = []
    let cause: unknown
    let unknown = false
    results.forEach((result, index) => {
      if (result.status === 'rejected') {
        failed.push(channels[index] ?? '?')
        cause ??= result.reason
        unknown ||= !isRefusal(result.reason) && !isUnsent(result.reason)
      }
    })
    if (failed.length === 0) return
    // As in RedisTransport: an SPUBLISH that timed out or was in flight when
    // its master died may still have run; rejecting once it is stale keeps
    // "failed" true.
    if (unknown) await untilStale(sentAt, this.#maxEnvelopeAgeMs)
    throw new TransportError(`RedisClusterTransport: publishing ${describeEnvelope(envelope)} failed on ${failed.length} of ${channels.length} channels (${failed.join(', ')})${unknown ? `; reported once older than maxEnvelopeAgeMs (${this.#maxEnvelopeAgeMs} ms), from when no instance handles it` : ''}`, { cause })
  }

  /**
   * Resolves once the master serving the topic's channel confirmed it.
   * Rejects while that master is unreachable; the topic is kept and
   * subscribed when it returns.
   */
  async subscribe (topic: string): Promise<void> {
    const cluster = this.#cluster
    if (this.#closing !== null) throw new TransportError('RedisClusterTransport: subscribe() called after close()')
    if (cluster === null || !this.#started) throw new TransportError('RedisClusterTransport: subscribe() called before start() resolved')
    this.#topics.add(topic)
    const channel = this.#channels.topic(topic)
    if (this.#isConfirmed(cluster, channel)) return
    if (!this.#reachable(cluster, channel)) {
      this.#report()
      throw new TransportError(`RedisClusterTransport: the cluster is unreachable for ${channel} (cluster ${cluster.status}); topic "${topic}" will be subscribed when it returns`, { cause: this.#lastError })
    }
    try {
      await this.#subscribeChannel(cluster, channel)
    } catch (err) {
      if (this.#closing === null && this.#topics.has(topic)) this.#scheduleResync()
      throw new TransportError(`RedisClusterTransport: subscribing to ${channel} failed; it is retried until it succeeds`, { cause: err })
    }
  }

  /** Delivery stops at once (envelopes still arriving are dropped on receipt); resolves once Redis confirmed. */
  async unsubscribe (topic: string): Promise<void> {
    if (!this.#topics.delete(topic)) return
    const channel = this.#channels.topic(topic)
    this.#confirmed.delete(channel)
    this.#slots.delete(channel)
    const cluster = this.#cluster
    if (cluster === null || this.#closing !== null || !this.#reachable(cluster, channel)) return
    try {
      await cluster.sunsubscribe(channel)
    } catch (err) {
      throw new TransportError(`RedisClusterTransport: unsubscribing from ${channel} failed; its envelopes are dropped on receipt`, { cause: err })
    }
  }

  /** 'up' once the cluster is connected and every channel is confirmed on the master that serves it now. */
  state (): TransportState {
    const cluster = this.#cluster
    if (!this.#started || this.#closing !== null || cluster === null || cluster.status !== 'ready') return 'down'
    for (const channel of this.#wanted()) if (!this.#isConfirmed(cluster, channel)) return 'down'
    return 'up'
  }

  /** Idempotent; closes the Cluster client the transport opened. */
  close (): Promise<void> {
    this.#closing ??= this.#shutdown()
    return this.#closing
  }

  async #shutdown (): Promise<void> {
    if (this.#retry !== null) clearTimeout(this.#retry)
    if (this.#cluster !== null) await closeConnection(this.#cluster)
  }

  #wanted (): string[] {
    return [...this.#own, ...[...this.#topics].map((topic) => this.#channels.topic(topic))]
  }

  #slot (channel: string): number {
    let slot = this.#slots.get(channel)
    if (slot === undefined) {
      slot = keySlot(channel)
      this.#slots.set(channel, slot)
    }
    return slot
  }

  /** The master the client's slot map names for a channel. */
  #owner (cluster: Cluster, channel: string): string | undefined {
    return cluster.slots[this.#slot(channel)]?.[0]
  }

  #isConfirmed (cluster: Cluster, channel: string): boolean {
    const owner = this.#owner(cluster, channel)
    return owner !== undefined && this.#confirmed.get(channel) === owner && !this.#lost.has(owner)
  }

  /** Whether a command for this channel can be sent now; false means it would surely fail. */
  #reachable (cluster: Cluster, channel: string): boolean {
    const owner = this.#owner(cluster, channel)
    if (cluster.status !== 'ready' || owner === undefined || this.#lost.has(owner)) return false
    // Without a connection to the owner ioredis sends the command to any node
    // and follows the MOVED reply: later publishes could overtake it.
    const connection = cluster.nodes('master').find((redis) => nodeKey(redis) === owner)
    return connection !== undefined && connection.status !== 'end' && connection.status !== 'close'
  }

  async #subscribeChannel (cluster: Cluster, channel: string): Promise<void> {
    // The master is read before the command: if the slot moves meanwhile,
    // the confirmation names the old one and the channel stays unconfirmed.
    const owner = this.#owner(cluster, channel)
    await cluster.ssubscribe(channel)
    if (owner === undefined) return
    this.#confirmed.set(channel, owner)
    // Its master answered: it is back (a restart before any failover).
    this.#lost.delete(owner)
  }

  #nodeLost (key: string | undefined): void {
    if (key === undefined || this.#closing !== null) return
    this.#lost.add(key)
    for (const [channel, owner] of this.#confirmed) if (owner === key) this.#confirmed.delete(channel)
    this.#report()
    this.#scheduleResync()
  }

  /**
   * Subscribes every channel not confirmed on its current master, one
   * SSUBSCRIBE each (channels of different slots cannot share one). Runs one
   * at a time; retried with capped backoff until every channel is confirmed.
   */
  #resync (): void {
    const cluster = this.#cluster
    if (!this.#started || this.#closing !== null || cluster === null) return
    if (this.#resyncing) {
      this.#again = true
      return
    }
    if (this.#retry !== null) clearTimeout(this.#retry)
    this.#retry = null
    // Sent now, a command would wait in the cluster's offline queue; 'ready' resyncs.
    if (cluster.status !== 'ready') return
    const missing = this.#wanted().filter((channel) => !this.#isConfirmed(cluster, channel))
    if (missing.length === 0 && cluster.status === 'ready') {
      this.#attempts = 0
      this.#report()
      return
    }
    this.#resyncing = true
    this.#again = false
    Promise.allSettled(missing.map(async (channel) => this.#subscribeChannel(cluster, channel))).then((results) => {
      this.#resyncing = false
      if (this.#closing !== null) return
      const failure = results.find((result) => result.status === 'rejected')
      if (failure !== undefined) this.#lastError = failure.reason
      this.#report()
      if (this.#again) this.#resync()
      else if (this.state() !== 'up') this.#scheduleResync()
      else this.#attempts = 0
    }, () => {})
  }

  #scheduleResync (): void {
    if (this.#retry !== null || this.#closing !== null || !this.#started) return
    const delay = Math.min(RECONNECT_BASE_MS * 2 ** this.#attempts, RECONNECT_MAX_MS)
    this.#attempts++
    this.#retry = setTimeout(() => {
      this.#retry = null
      this.#resync()
    }, delay).unref()
  }

  #receive (channel: string, text: string, instanceId: string, onEnvelope: EnvelopeHandler): void {
    if (this.#closing !== null) return
    const topic = this.#channels.topicOf(channel)
    if (topic !== undefined && !this.#topics.has(topic)) return
    receiveEnvelope(this.#log, channel, text, instanceId, onEnvelope)
  }

  /** Logs each change of state once: warn with the cause going down, info coming up. */
  #report (): void {
    if (!this.#started || this.#closing !== null) return
    const state = this.state()
    if (state === this.#reported) return
    this.#reported = state
    if (state === 'up') {
      this.#lastError = undefined
      this.#log.info({ channelPrefix: this.#prefix, instanceId: this.#instanceId, topics: this.#topics.size }, 'ws-hub: Redis Cluster transport up')
      return
    }
    const err = this.#lastError ?? new TransportError('RedisClusterTransport: a cluster node was lost')
    this.#log.warn({ err, cluster: this.#cluster?.status, lost: [...this.#lost], instanceId: this.#instanceId },
      'ws-hub: Redis Cluster transport down; envelopes to and from other instances on the lost shard are dropped until its channels are subscribed again')
  }
}

function nodeKey (redis: Redis | null): string | undefined {
  if (redis === null) return undefined
  return `${redis.options.host ?? 'localhost'}:${redis.options.port ?? 6379}`
}

/** ioredis refused it before writing it (no connection to send it on). */
function isUnsent (err: unknown): boolean {
  return err instanceof Error && /isn't ready and enableOfflineQueue|No sharded subscriber/.test(err.message)
}

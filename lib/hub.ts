import { EventEmitter } from 'node:events'
import { Compile } from 'typebox/compile'
import type { ConnectionManager } from './connections/connection-manager.js'
import type { ConnectionInfo } from './connections/connection.js'
import type { Directory } from './cluster/directory.js'
import type { DeliveryReport, MessageDispatcher, PublishCallOptions } from './dispatch/message-dispatcher.js'
import type { PeerTarget } from './cluster/envelope.js'
import type { HubStats } from './http/rest-schemas.js'
import type { Static } from 'typebox'
import { CloseCodes, ClientId, IdempotencyKey, MAX_HISTORY_LIMIT, ServerFrames, Topic, UserId, nestsDeeperThan } from './protocol/frames.js'
import { HistoryOffError, InvalidArgumentError, InvalidMessageError } from './errors.js'
import type { TopicHistory } from './history/topic-history.js'
import type { StreamPosition } from './cluster/history.js'
import type { TopicPolicy } from './topics/topic-policy.js'
import type { Subscriptions } from './topics/subscriptions.js'
import type { PresenceTracker } from './presence/presence-tracker.js'
import type { PresencePage } from './cluster/presence.js'

export interface ListPage {
  limit?: number
  offset?: number
}

export interface ConnectionPage {
  /** Connections in the whole cluster. */
  count: number
  connections: ConnectionInfo[]
  /**
   * Instances that did not describe their connections in time; their
   * connections on this page are listed with `topics: []`.
   */
  unreachableInstances?: string[]
}

export type CloseTarget = { clientId: string } | { userId: string }
/** A client, or every connection of a user. */
export type SubscriptionTarget = CloseTarget

export interface CloseOptions {
  /** 1000, 1008 or 4000 to 4999. Default 4000 (closed by server). */
  code?: number
  reason?: string
}

export interface DisconnectDetails {
  code: number
  reason: string
}

/** Events of `fastify.wsHub`, for this instance's connections. */
export interface HubEvents {
  connect: [ConnectionInfo]
  disconnect: [ConnectionInfo, DisconnectDetails]
}

/** A `publish` frame as subscribers receive it. */
export type PublishedFrame = Static<typeof ServerFrames.publish>

/** A page of a history topic, as `wsHub.history` and REST answer it. */
export interface HistoryResult {
  /** `publish` frames, in offset order. */
  publications: PublishedFrame[]
  /** The topic's current offset and epoch. */
  offset: number
  epoch: string
  /** false: what came after `since` could not be given (older than kept, another epoch, or more than `limit`). */
  complete: boolean
}

export interface HubDeps {
  instanceId: string
  connections: ConnectionManager
  dispatcher: MessageDispatcher
  directory: Directory
  stats: () => HubStats
  /** The socket side's limit, applied to every message sent through the facade. */
  maxJsonDepth: number
  /** Namespaces and schemas: a publish here meets the topic's schema, as a client's does. */
  policy: TopicPolicy
  subscriptions: Subscriptions
  presence: PresenceTracker
  history: TopicHistory | null
}

const DEFAULT_PAGE = 100
const checkTopic = Compile(Topic)
const checkClientId = Compile(ClientId)
const checkUserId = Compile(UserId)
const checkKey = Compile(IdempotencyKey)

/**
 * `fastify.wsHub`: what an application calls. Sends go through the one
 * dispatcher path; lookups answer for the whole cluster. Nothing here hands
 * out a socket or a way to write bytes to one.
 */
export class WsHub extends EventEmitter<HubEvents> {
  readonly instanceId: string
  readonly #deps: HubDeps

  constructor (deps: HubDeps) {
    super()
    this.instanceId = deps.instanceId
    this.#deps = deps
  }

  /** `{"type":"server-broadcast"}` to every client of every instance. */
  broadcast (message: unknown): Promise<DeliveryReport> {
    this.#checkDepth(message)
    return this.#deps.dispatcher.broadcast(message)
  }

  /** `{"type":"direct","from":"server"}` to one client, wherever it is connected. */
  sendTo (clientId: string, message: unknown): Promise<DeliveryReport> {
    check(checkClientId.Check(clientId), 'clientId', clientId)
    this.#checkDepth(message)
    return this.#deps.dispatcher.sendTo(clientId, message)
  }

  /** `{"type":"direct","from":"server","user":...}` to every connection of a user. */
  sendToUser (userId: string, message: unknown): Promise<DeliveryReport> {
    check(checkUserId.Check(userId), 'userId', userId)
    this.#checkDepth(message)
    return this.#deps.dispatcher.sendToUser(userId, message)
  }

  /**
   * `{"type":"publish","from":"server"}` to the topic's subscribers on every
   * instance. Into a history topic the report carries its `offset` and
   * `epoch`; with `idempotencyKey`, a key seen in the topic within
   * `idempotencyWindowMs` is not published again and answers the first
   * publish's offset.
   */
  publish (topic: string, message: unknown, options: PublishCallOptions = {}): Promise<DeliveryReport> {
    this.#checkTopic(topic)
    if (options.idempotencyKey !== undefined) check(checkKey.Check(options.idempotencyKey), 'idempotencyKey', options.idempotencyKey)
    this.#checkDepth(message)
    const invalid = this.#deps.policy.invalidMessage(topic, message)
    if (invalid !== null) throw new InvalidMessageError(`fastify-ws-hub: ${invalid} (the schema of topic ${topic})`)
    return this.#deps.dispatcher.publish(topic, message, options)
  }

  /**
   * Subscribes a client, or every connection of a user, to a topic on
   * whichever instances hold them; the topic rules do not apply (this is
   * the server). Each client is told `{"type":"subscribed"}`. Resolves once
   * this instance's connections are subscribed and their transport interest
   * confirmed, and the other holders were asked; `recipients` counts this
   * instance's connections, less any at `maxTopicsPerConnection` (skipped).
   */
  subscribe (target: SubscriptionTarget, topic: string): Promise<DeliveryReport> {
    return this.#subscription(this.#peer(target, topic), topic, true)
  }

  /** Undoes `subscribe` (or a client's own subscription), wherever the connections are. */
  unsubscribe (target: SubscriptionTarget, topic: string): Promise<DeliveryReport> {
    return this.#subscription(this.#peer(target, topic), topic, false)
  }

  /** Checked synchronously, like every facade argument. */
  #peer (target: SubscriptionTarget, topic: string): PeerTarget {
    this.#checkTopic(topic)
    if ('clientId' in target) {
      check(checkClientId.Check(target.clientId), 'clientId', target.clientId)
      return { kind: 'client', id: target.clientId }
    }
    check(checkUserId.Check(target.userId), 'userId', target.userId)
    return { kind: 'user', userId: target.userId }
  }

  async #subscription (peer: PeerTarget, topic: string, subscribe: boolean): Promise<DeliveryReport> {
    const report = await this.#deps.dispatcher.subscription(peer, topic, subscribe)
    if (subscribe && report.recipients > 0) await this.#deps.subscriptions.ready(topic)
    return report
  }

  /** Closes a client, or every connection of a user, on whichever instances hold them. */
  close (target: CloseTarget, options: CloseOptions = {}): Promise<DeliveryReport> {
    const code = options.code ?? CloseCodes.closedByServer
    const reason = options.reason ?? 'closed by server'
    if (!(code === 1000 || code === 1008 || (Number.isInteger(code) && code >= 4000 && code <= 4999))) {
      throw new InvalidArgumentError(`fastify-ws-hub: close code must be 1000, 1008 or an application code from 4000 to 4999 (got ${String(code)})`)
    }
    if (Buffer.byteLength(reason) > 123) throw new InvalidArgumentError('fastify-ws-hub: a close reason is at most 123 bytes')
    if ('clientId' in target) {
      check(checkClientId.Check(target.clientId), 'clientId', target.clientId)
      return this.#deps.dispatcher.close({ kind: 'client', id: target.clientId }, code, reason)
    }
    check(checkUserId.Check(target.userId), 'userId', target.userId)
    return this.#deps.dispatcher.close({ kind: 'user', userId: target.userId }, code, reason)
  }

  /**
   * One connection, wherever it is, with its topics (asked of the instance
   * holding it); null when no instance holds it. Rejects with
   * `WS_HUB_QUERY_TIMEOUT` when the holder does not answer.
   */
  async get (clientId: string): Promise<ConnectionInfo | null> {
    const { connections, directory, dispatcher } = this.#deps
    const local = connections.info(clientId)
    if (local !== undefined) return local
    const entry = await directory.get(clientId)
    if (entry === null || entry.instanceId === this.instanceId) return null
    const [found] = await dispatcher.describeRemote(entry.instanceId, [clientId])
    return found ?? null
  }

  /** A page of the cluster's connections, in a stable order. */
  async list (page: ListPage = {}): Promise<ConnectionPage> {
    const { connections, directory, dispatcher } = this.#deps
    const listed = await directory.list({ limit: page.limit ?? DEFAULT_PAGE, offset: page.offset ?? 0 })
    const byInstance = new Map<string, string[]>()
    for (const entry of listed.entries) {
      if (entry.instanceId === this.instanceId) continue
      const ids = byInstance.get(entry.instanceId) ?? []
      ids.push(entry.id)
      byInstance.set(entry.instanceId, ids)
    }
    const remote = new Map<string, ConnectionInfo>()
    const unreachable: string[] = []
    await Promise.all([...byInstance].map(async ([instanceId, ids]) => {
      try {
        for (const info of await dispatcher.describeRemote(instanceId, ids)) remote.set(info.id, info)
      } catch {
        unreachable.push(instanceId)
      }
    }))
    const result: ConnectionInfo[] = []
    for (const entry of listed.entries) {
      const info = entry.instanceId === this.instanceId ? connections.info(entry.id) : remote.get(entry.id)
      if (info !== undefined) result.push(info)
      else if (unreachable.includes(entry.instanceId)) result.push({ ...entry, topics: [] })
    }
    const out: ConnectionPage = { count: listed.count, connections: result }
    if (unreachable.length > 0) out.unreachableInstances = unreachable.sort()
    return out
  }

  /**
   * One page of a presence topic's members, cluster-wide, in client id
   * order, with the topic's `clients` and `users` counts (`limit` 0: the
   * counts alone; default 100, at most 1000). Pass `cursor` back for the
   * next page. Throws `PresenceOffError` when the topic's rules do not set
   * `presence: true`, and `ClusterStateError` when the registry is down.
   */
  async presence (topic: string, page: { limit?: number, cursor?: string } = {}): Promise<PresencePage> {
    this.#checkTopic(topic)
    if (page.limit !== undefined && !(Number.isInteger(page.limit) && page.limit >= 0)) {
      throw new InvalidArgumentError(`fastify-ws-hub: presence limit must be an integer of at least 0 (got ${String(page.limit)})`)
    }
    return await this.#deps.presence.list(topic, page)
  }

  /**
   * A history topic's publications after `since` (at most `limit`, default
   * 100, at most 1000), or without `since` the last `limit` still kept,
   * with the topic's current position. Throws `HistoryOffError` for a topic
   * whose rules keep no history; rejects with the store's error when it
   * cannot answer.
   */
  async history (topic: string, page: { since?: StreamPosition, limit?: number } = {}): Promise<HistoryResult> {
    this.#checkTopic(topic)
    if (page.limit !== undefined && !(Number.isInteger(page.limit) && page.limit >= 1 && page.limit <= MAX_HISTORY_LIMIT)) {
      throw new InvalidArgumentError(`fastify-ws-hub: history limit must be an integer from 1 to ${MAX_HISTORY_LIMIT} (got ${String(page.limit)})`)
    }
    const read = await this.#deps.history?.read(topic, page.since, page.limit) ?? null
    if (read === null) throw new HistoryOffError(`fastify-ws-hub: topic ${topic} keeps no history (its rules have no history)`)
    return { ...read, publications: read.publications.map((text) => JSON.parse(text) as PublishedFrame) }
  }

  /** Connections in the whole cluster. */
  async count (): Promise<number> {
    return (await this.#deps.directory.list({ limit: 0, offset: 0 })).count
  }

  /** Counters of this instance. */
  stats (): HubStats {
    return this.#deps.stats()
  }

  /** A topic in the protocol's charset, and in a declared namespace. */
  #checkTopic (topic: string): void {
    check(checkTopic.Check(topic), 'topic', topic)
    if (this.#deps.policy.rulesFor(topic) === null) {
      throw new InvalidArgumentError(`fastify-ws-hub: the namespace of topic ${topic} is not declared in topics.namespaces`)
    }
  }

  /**
   * A client's frame may nest at most `maxJsonDepth` levels, itself
   * included; a message sent here gets the same wrapper, so it meets the
   * same limit. Checked before the dispatcher serializes it: JSON.stringify
   * recurses, and a few thousand levels overflow the stack there.
   */
  #checkDepth (message: unknown): void {
    const max = this.#deps.maxJsonDepth
    if (nestsDeeperThan({ message }, max)) {
      throw new InvalidArgumentError(`fastify-ws-hub: message nests deeper than ${max} levels (maxJsonDepth)`)
    }
  }
}

function check (ok: boolean, name: string, value: unknown): void {
  if (!ok) throw new InvalidArgumentError(`fastify-ws-hub: ${name} is not valid (got ${JSON.stringify(value)})`)
}

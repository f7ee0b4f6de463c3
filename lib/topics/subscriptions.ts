import type { FastifyBaseLogger } from 'fastify'
import { Compile } from 'typebox/compile'
import type { Connection } from '../connections/connection.js'
import type { ConnectionManager } from '../connections/connection-manager.js'
import type { TopicInterest } from '../dispatch/topic-interest.js'
import { FailureLog } from '../dispatch/failure-log.js'
import type { PeerTarget } from '../cluster/envelope.js'
import { Topic } from '../protocol/frames.js'
import { serializeFrame } from '../protocol/serialize.js'
import type { TopicPolicy } from './topic-policy.js'
import type { StreamPosition } from '../cluster/history.js'
import type { TopicHistory } from '../history/topic-history.js'

export interface SubscriptionsOptions {
  connections: ConnectionManager
  interest: TopicInterest
  policy: TopicPolicy
  maxTopicsPerConnection: number
  log: FastifyBaseLogger
  /** History topics answer `subscribed` with their position (and recover a `since`). */
  history?: TopicHistory | null
}

const isTopic = Compile(Topic)

/**
 * Subscribes and unsubscribes this instance's connections, for the client
 * itself and for the server (facade, REST, another instance, `authenticate`),
 * and tells each client with a `subscribed` / `unsubscribed` frame, so a
 * client learns its state one way whoever changed it.
 *
 * A `subscribed` frame goes out once the transport confirmed the topic,
 * like the client's ack: a publish made anywhere after it reaches the
 * client. Every frame waits on the same per-topic queue, so frames about
 * one topic leave in the order the changes were made.
 */
export class Subscriptions {
  readonly #connections: ConnectionManager
  readonly #interest: TopicInterest
  readonly #policy: TopicPolicy
  readonly #maxTopics: number
  readonly #log: FastifyBaseLogger
  readonly #overLimit: FailureLog
  readonly #history: TopicHistory | null

  constructor (options: SubscriptionsOptions) {
    this.#connections = options.connections
    this.#interest = options.interest
    this.#policy = options.policy
    this.#maxTopics = options.maxTopicsPerConnection
    this.#log = options.log
    this.#history = options.history ?? null
    this.#overLimit = new FailureLog(options.log, 'ws-hub: a server-side subscription was skipped: the connection is at maxTopicsPerConnection', 10_000, 'warn')
  }

  /**
   * A client's own `subscribe`: false when it is at `maxTopicsPerConnection`
   * (nothing changes); otherwise resolves once it is told `subscribed`
   * (on a history topic, after what it missed since `since`).
   */
  async add (connection: Connection, topic: string, since?: StreamPosition): Promise<boolean> {
    if (this.#full(connection, topic)) return false
    this.#connections.subscribe(connection, topic)
    await this.#tell(connection, 'subscribed', topic, since)
    return true
  }

  /** A client's own `unsubscribe`; idempotent, and answered either way. */
  async remove (connection: Connection, topic: string): Promise<void> {
    this.#connections.unsubscribe(connection, topic)
    await this.#tell(connection, 'unsubscribed', topic)
  }

  /**
   * The server's subscribe or unsubscribe of a client or a user's
   * connections held here. Returns how many connections it applied to
   * (already in that state included); a connection at
   * `maxTopicsPerConnection` is skipped, not counted, and logged. Clients
   * are told only of a change.
   */
  apply (target: PeerTarget, topic: string, subscribe: boolean): number {
    const connections = this.#connections
    if (target.kind === 'client') {
      const connection = connections.get(target.id)
      return connection === undefined || connection.closing ? 0 : this.#applyTo(connection, topic, subscribe)
    }
    let applied = 0
    for (const connection of connections.byUser(target.userId)) applied += this.#applyTo(connection, topic, subscribe)
    return applied
  }

  /** Resolves once the transport confirmed (or failed) this instance's interest in the topic. */
  async ready (topic: string): Promise<void> {
    await this.#interest.ready(topic)
  }

  /**
   * The topics `authenticate` returned: the connection starts subscribed
   * to them. The identity is the application's, so a bad entry is its bug,
   * logged and skipped rather than refusing a user who got this far.
   */
  subscribeIdentity (connection: Connection): void {
    const topics: unknown = connection.identity?.topics
    if (topics === undefined) return
    if (!Array.isArray(topics)) {
      this.#log.warn({ clientId: connection.id }, 'ws-hub: authenticate returned topics that are not an array; ignored')
      return
    }
    const skipped: unknown[] = []
    for (const topic of topics as unknown[]) {
      if (typeof topic !== 'string' || !isTopic.Check(topic) || this.#policy.rulesFor(topic) === null) skipped.push(topic)
      else this.#applyTo(connection, topic, true)
    }
    if (skipped.length > 0) this.#log.warn({ clientId: connection.id, skipped }, 'ws-hub: authenticate returned topics that are not valid topics or are in an undeclared namespace; skipped')
  }

  #applyTo (connection: Connection, topic: string, subscribe: boolean): number {
    if (!subscribe) {
      if (this.#connections.unsubscribe(connection, topic)) this.#tell(connection, 'unsubscribed', topic).catch(noop)
      return 1
    }
    if (connection.topics.has(topic)) return 1
    if (this.#full(connection, topic)) {
      this.#overLimit.record(undefined, { clientId: connection.id, topic, maxTopicsPerConnection: this.#maxTopics })
      return 0
    }
    this.#connections.subscribe(connection, topic)
    this.#tell(connection, 'subscribed', topic).catch(noop)
    return 1
  }

  #full (connection: Connection, topic: string): boolean {
    return !connection.topics.has(topic) && connection.topics.size >= this.#maxTopics
  }

  /** Never rejects: the queue it waits on settles, and a write to a gone socket is a no-op. */
  async #tell (connection: Connection, type: 'subscribed' | 'unsubscribed', topic: string, since?: StreamPosition): Promise<void> {
    await this.#interest.ready(topic)
    // Gone meanwhile: nothing to tell (and a write would count it as a dead socket).
    if (this.#connections.get(connection.id) !== connection) return
    if (type === 'subscribed' && this.#history !== null && await this.#history.subscribed(connection, topic, since)) return
    this.#connections.write(connection, serializeFrame({ type, topic }))
  }
}

/** `#tell` never rejects; this only keeps the promise from floating. */
function noop (): void {}

import type { FastifyBaseLogger } from 'fastify'
import type { Connection } from '../connections/connection.js'
import type { Presence, PresenceDeparture, PresenceMember, PresencePage } from '../cluster/presence.js'
import type { OutgoingFrame } from '../protocol/frames.js'
import { FailureLog } from '../dispatch/failure-log.js'
import { PresenceOffError } from '../errors.js'

/**
 * What presence reads of a topic's rules. `joinLeave: true` (or `'user'`)
 * announces a user's first connection to the topic cluster-wide and its
 * last; `'connection'` announces every connection. Null: the topic has no
 * rules (an undeclared namespace), so no presence.
 */
export interface PresenceRules {
  presence: boolean
  joinLeave: boolean | 'user' | 'connection'
}
export type PresenceRulesFor = (topic: string) => PresenceRules | null

/** Where join and leave frames go: the topic's subscribers on every instance (the dispatcher). */
export type TopicSender = (topic: string, frame: OutgoingFrame) => void

/** `authenticate`'s `info` is stored with every presence member and sent in listings: bounded so it cannot bloat either. */
export const MAX_PRESENCE_INFO_BYTES = 1024
export const DEFAULT_PRESENCE_PAGE = 100
export const MAX_PRESENCE_PAGE = 1000

export interface PresenceTrackerOptions {
  presence: Presence
  rulesFor: PresenceRulesFor
  send: TopicSender
  log: FastifyBaseLogger
}

const NO_RULES: PresenceRules = { presence: false, joinLeave: false }
const settledOk = (): void => {}

/**
 * Keeps the presence backend in step with this instance's subscriptions to
 * presence topics and announces joins and leaves. Told by the connection
 * manager of every subscribe and unsubscribe (a removed connection's topics
 * included); a topic with neither `presence` nor `joinLeave` costs nothing.
 *
 * Per connection and topic, the backend calls run one after another, so an
 * unsubscribe right after a subscribe is never applied before it, and the
 * join is announced before the leave. A failed call is logged (rate-limited);
 * the backend restores this instance's members when it answers again.
 */
export class PresenceTracker {
  readonly #presence: Presence
  readonly #rulesFor: PresenceRulesFor
  readonly #send: TopicSender
  readonly #log: FastifyBaseLogger
  readonly #failures: FailureLog
  readonly #tooBig: FailureLog
  /** "<clientId> <topic>" -> the last backend call for that pair, while it runs. */
  readonly #tails = new Map<string, Promise<void>>()
  readonly #infos = new WeakMap<Connection, unknown>()

  constructor (options: PresenceTrackerOptions) {
    this.#presence = options.presence
    this.#rulesFor = options.rulesFor
    this.#send = options.send
    this.#log = options.log
    this.#failures = new FailureLog(options.log, 'ws-hub: presence update failed; this instance\'s members are restored in the registry once it answers')
    this.#tooBig = new FailureLog(options.log, `ws-hub: authenticate returned an info of more than ${MAX_PRESENCE_INFO_BYTES} bytes of JSON; presence lists the connection without it`, 10_000, 'warn')
    options.presence.onDeparted?.((departures) => this.departed(departures))
  }

  #rules (topic: string): PresenceRules {
    return this.#rulesFor(topic) ?? NO_RULES
  }

  /** The connection joined a topic (called synchronously by the connection manager). */
  subscribed (connection: Connection, topic: string): void {
    const rules = this.#rules(topic)
    if (!rules.presence && rules.joinLeave === false) return
    const member: PresenceMember = { clientId: connection.id, userId: connection.userId }
    const info = this.#info(connection)
    if (info !== undefined) member.info = info
    this.#queue(connection.id, topic, async () => {
      const first = await this.#presence.add(topic, member)
      if (announces(rules, first)) this.#send(topic, { type: 'join', topic, clientId: connection.id, userId: connection.userId })
    })
  }

  /** The connection left a topic, or was removed with its topics. */
  unsubscribed (connection: Connection, topic: string): void {
    const rules = this.#rules(topic)
    if (!rules.presence && rules.joinLeave === false) return
    this.#queue(connection.id, topic, async () => {
      const last = await this.#presence.remove(topic, connection.id)
      if (announces(rules, last)) this.#send(topic, { type: 'leave', topic, clientId: connection.id, userId: connection.userId })
    })
  }

  /** Resolves once the backend calls made so far for the pair have run (whatever their outcome): a subscribe is acked after it is listed. */
  async settled (connection: Connection, topic: string): Promise<void> {
    await this.#tails.get(`${connection.id} ${topic}`)
  }

  /** Members removed with a departed instance: their leaves go to the topics' subscribers from here. */
  departed (departures: PresenceDeparture[]): void {
    for (const { topic, clientId, userId, lastOfUser } of departures) {
      if (announces(this.#rules(topic), lastOfUser)) this.#send(topic, { type: 'leave', topic, clientId, userId })
    }
  }

  /**
   * A page of a presence topic's members with its counts. Throws
   * `PresenceOffError` for a topic without `presence`, and the backend's
   * coded error when the registry cannot answer.
   */
  async list (topic: string, query: { limit?: number | undefined, cursor?: string | undefined }): Promise<PresencePage> {
    if (!this.#rules(topic).presence) throw new PresenceOffError(`fastify-ws-hub: topic ${topic} has no presence (its rules do not set presence: true)`)
    const limit = Math.min(Math.max(0, Math.floor(query.limit ?? DEFAULT_PRESENCE_PAGE)), MAX_PRESENCE_PAGE)
    return await this.#presence.list(topic, query.cursor === undefined ? { limit } : { limit, cursor: query.cursor })
  }

  #queue (clientId: string, topic: string, call: () => Promise<void>): void {
    const key = `${clientId} ${topic}`
    const previous = this.#tails.get(key)
    const run = async (): Promise<void> => {
      try {
        await call()
      } catch (err) {
        this.#failures.record(err, { clientId, topic })
      }
    }
    const tail = previous === undefined ? run() : previous.then(run, run)
    this.#tails.set(key, tail)
    // The map holds only pairs with a call under way.
    tail.then(() => { if (this.#tails.get(key) === tail) this.#tails.delete(key) }, settledOk)
  }

  /** `authenticate`'s `info`, once per connection: left out when its JSON is over the bound (or it has none). */
  #info (connection: Connection): unknown {
    if (this.#infos.has(connection)) return this.#infos.get(connection)
    const info = connection.identity?.info
    let kept: unknown
    if (info !== undefined) {
      let json: string | undefined
      try {
        json = JSON.stringify(info)
      } catch (err) {
        this.#log.warn({ err, clientId: connection.id }, 'ws-hub: authenticate returned an info that is not JSON; presence lists the connection without it')
      }
      if (json !== undefined && Buffer.byteLength(json) <= MAX_PRESENCE_INFO_BYTES) kept = JSON.parse(json)
      else if (json !== undefined) this.#tooBig.record(undefined, { clientId: connection.id, bytes: Buffer.byteLength(json) })
    }
    this.#infos.set(connection, kept)
    return kept
  }
}

/** Whether a join or leave goes out: every one per connection, the user's first or last per user. */
function announces (rules: PresenceRules, firstOrLast: boolean): boolean {
  if (rules.joinLeave === false) return false
  return rules.joinLeave === 'connection' || firstOrLast
}

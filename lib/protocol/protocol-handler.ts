import type { RawData } from 'ws'
import type { FastifyBaseLogger } from 'fastify'
import type { Connection } from '../connections/connection.js'
import { serializeFrame } from './serialize.js'
import type { ConnectionManager } from '../connections/connection-manager.js'
import type { MessageDispatcher } from '../dispatch/message-dispatcher.js'
import type { TopicPolicy, Refusal } from '../topics/topic-policy.js'
import type { Authorizer, Action } from '../topics/authorizer.js'
import type { Subscriptions } from '../topics/subscriptions.js'
import type { PresenceTracker } from '../presence/presence-tracker.js'
import { presenceReply } from '../presence/presence-reply.js'
import type { TopicHistory } from '../history/topic-history.js'
import { historyReply, publishThroughHistory } from '../history/history-frames.js'
import type { WsHub } from '../hub.js'
import { HubProtocolError, type HubService, type ServiceContext } from './service.js'
import { takeMessageToken } from '../connections/rate-limit.js'
import { errorCodeViolation, type Telemetry } from '../telemetry.js'
import type { RateLimit } from '../options/hub-options.js'
import type { Target } from '../cluster/envelope.js'
import {
  CloseCodes,
  ErrorCodes,
  nestsDeeperThan,
  isBuiltInType,
  validateBuiltIn,
  validateEnvelope,
  type BroadcastFrame,
  type ClientFrame,
  type DirectFrame,
  type HistoryFrame,
  type OutgoingFrame,
  type PresenceFrame,
  type PublishFrame,
  type SubscribeFrame,
  type UnsubscribeFrame
} from './frames.js'

export interface ProtocolHandlerOptions {
  connections: ConnectionManager
  dispatcher: MessageDispatcher
  subscriptions: Subscriptions
  presence: PresenceTracker
  policy: TopicPolicy
  authorizer: Authorizer
  /** false: a client's broadcast is refused with `forbidden`. */
  clientBroadcast: boolean
  /** false: a client's direct is refused with `forbidden`. */
  clientDirect: boolean
  hub: WsHub
  service: HubService
  echo: boolean
  telemetry: Telemetry
  messageRateLimit: RateLimit | false
  maxJsonDepth: number
  maxTopicsPerConnection: number
  log: FastifyBaseLogger
  history?: TopicHistory | null
}

const BROADCAST_OFF: Refusal = { code: ErrorCodes.forbidden, message: 'clients may not broadcast on this server' }
const DIRECT_OFF: Refusal = { code: ErrorCodes.forbidden, message: 'clients may not send direct messages on this server' }

export type MessageId = string | number

export interface InboundCounters {
  messagesIn: number
  errorsSent: number
  serviceErrors: number
  rateLimited: number
  floodCloses: number
}

/** Turns one client frame into actions, and answers every bad one with an error frame. */
export class ProtocolHandler {
  readonly counters: InboundCounters = { messagesIn: 0, errorsSent: 0, serviceErrors: 0, rateLimited: 0, floodCloses: 0 }
  readonly #connections: ConnectionManager
  readonly #dispatcher: MessageDispatcher
  readonly #subscriptions: Subscriptions
  readonly #presence: PresenceTracker
  readonly #policy: TopicPolicy
  readonly #authorizer: Authorizer
  readonly #broadcastRefusal: Refusal | null
  readonly #directRefusal: Refusal | null
  readonly #hub: WsHub
  readonly #service: HubService
  readonly #echo: boolean
  readonly #telemetry: Telemetry
  readonly #rateLimit: RateLimit | false
  readonly #maxJsonDepth: number
  readonly #maxTopics: number
  readonly #log: FastifyBaseLogger
  readonly #history: TopicHistory | null

  constructor (options: ProtocolHandlerOptions) {
    this.#connections = options.connections
    this.#dispatcher = options.dispatcher
    this.#subscriptions = options.subscriptions
    this.#presence = options.presence
    this.#policy = options.policy
    this.#authorizer = options.authorizer
    this.#broadcastRefusal = options.clientBroadcast ? null : BROADCAST_OFF
    this.#directRefusal = options.clientDirect ? null : DIRECT_OFF
    this.#hub = options.hub
    this.#service = options.service
    this.#echo = options.echo
    this.#telemetry = options.telemetry
    this.#rateLimit = options.messageRateLimit
    this.#maxJsonDepth = options.maxJsonDepth
    this.#maxTopics = options.maxTopicsPerConnection
    this.#log = options.log
    this.#history = options.history ?? null
  }

  context (connection: Connection): ServiceContext {
    return {
      client: connection.info(this.#connections.instanceId),
      reply: (frame) => { this.#connections.write(connection, serializeFrame(frame)) },
      hub: this.#hub,
      log: this.#log
    }
  }

  async handle (connection: Connection, data: RawData, isBinary: boolean): Promise<void> {
    this.counters.messagesIn++
    let type: string | undefined
    try {
      type = await this.#handle(connection, data, isBinary)
    } finally {
      this.#telemetry.messageIn(connection, type, Buffer.isBuffer(data) ? data.length : 0)
    }
  }

  /** Returns the frame's type once it is known to be a well-formed frame. */
  async #handle (connection: Connection, data: RawData, isBinary: boolean): Promise<string | undefined> {
    if (connection.closing) return
    // Parsed before the rate check so a refused request can be answered
    // with its own id; maxPayload bounds what a refused frame costs.
    let frame: unknown
    let parsed = false
    if (!isBinary) {
      try {
        frame = JSON.parse(data.toString())
        parsed = true
      } catch {}
    }
    if (this.#rateLimit !== false) {
      const verdict = takeMessageToken(connection, this.#rateLimit, Date.now())
      if (verdict !== 'ok') {
        this.counters.rateLimited++
        if (verdict === 'flooding') {
          this.counters.floodCloses++
          this.#log.warn({ clientId: connection.id, ip: connection.ip }, 'ws-hub: client kept flooding past the rate limit, closing')
          this.#connections.close(connection, CloseCodes.policyViolation, 'rate limit exceeded')
        } else {
          this.#error(connection, ErrorCodes.rateLimited, `more than ${this.#rateLimit.max} messages per ${this.#rateLimit.intervalMs} ms; message dropped`, idOf(frame))
        }
        return
      }
    }
    if (isBinary) {
      this.#error(connection, ErrorCodes.unsupportedBinary, 'binary frames are not supported; send JSON text', undefined)
      return
    }
    if (!parsed) {
      this.#error(connection, ErrorCodes.invalidJson, 'message is not valid JSON', undefined)
      return
    }
    if (nestsDeeperThan(frame, this.#maxJsonDepth)) {
      this.#error(connection, ErrorCodes.invalidMessage, `message nests deeper than ${this.#maxJsonDepth} levels`, idOf(frame))
      return
    }
    const envelope = validateEnvelope(frame)
    if (!envelope.ok) {
      this.#error(connection, ErrorCodes.invalidMessage, envelope.error, idOf(frame))
      return
    }
    const message = frame as ClientFrame
    try {
      const acked = await this.#dispatch(connection, message)
      if (acked && message.id !== undefined) this.#reply(connection, { type: 'ack', id: message.id })
    } catch (err) {
      this.#failed(connection, err, message)
    }
    return message.type
  }

  /** Returns whether the frame was handled (and so should be acked). */
  async #dispatch (connection: Connection, message: ClientFrame): Promise<boolean> {
    const type = message.type
    if (!isBuiltInType(type)) return this.#custom(connection, message)
    const check = validateBuiltIn(type, message)
    if (!check.ok) {
      this.#error(connection, ErrorCodes.invalidMessage, check.error, message.id)
      return false
    }
    switch (type) {
      case 'ping':
        // The pong is the answer; it carries the id, so no separate ack.
        this.#reply(connection, message.id === undefined ? { type: 'pong' } : { type: 'pong', id: message.id })
        return false
      case 'broadcast': {
        const frame = message as BroadcastFrame
        const permit = this.#permit(connection, this.#broadcastRefusal, 'broadcast', undefined, frame.id)
        if (permit !== true && !(await permit)) return false
        this.#maybeEcho(connection, frame.message)
        // The ack reflects local delivery: the other instances are reached in
        // the background, and a failure there is counted and logged, never
        // held against the sender (nor a stalled broker awaited).
        this.#dispatcher.dispatch({ kind: 'all' }, withSender(connection, { type: 'message', message: frame.message }))
        return true
      }
      case 'direct': {
        const frame = message as DirectFrame
        if ((frame.target === undefined) === (frame.user === undefined)) {
          this.#error(connection, ErrorCodes.invalidMessage, 'direct needs exactly one of target (a client id) or user (a user id)', frame.id)
          return false
        }
        const permit = this.#permit(connection, this.#directRefusal, 'direct', undefined, frame.id)
        if (permit !== true && !(await permit)) return false
        this.#maybeEcho(connection, frame.message)
        const target: Target = frame.target !== undefined ? { kind: 'client', id: frame.target } : { kind: 'user', userId: frame.user ?? '' }
        const out = withSender(connection, { type: 'direct', message: frame.message })
        if (frame.user !== undefined) out.user = frame.user
        const sent = this.#dispatcher.dispatch(target, out)
        // Delivered here: acked at once, like a broadcast.
        if (sent.recipients > 0) return true
        // Only the directory can tell a target held elsewhere from one that
        // does not exist. It answers, or fails once the registry is found
        // down or hung; the publish itself is still not awaited.
        const who = frame.target !== undefined ? `client with id ${frame.target}` : `connection of user ${frame.user ?? ''}`
        let holders: number
        try {
          holders = await sent.holders
        } catch {
          // The failure is counted and logged (rate-limited) by the dispatcher.
          this.#error(connection, ErrorCodes.unavailable, `cannot tell where the ${who} is: the cluster state is unavailable; try again later`, frame.id)
          return false
        }
        if (holders === 0) {
          this.#error(connection, ErrorCodes.unknownTarget, `no ${who}`, frame.id)
          return false
        }
        return true
      }
      case 'subscribe': {
        const { topic, since } = message as SubscribeFrame
        const permit = this.#permit(connection, this.#policy.subscribeRefusal(connection, topic), 'subscribe', topic, message.id)
        if (permit !== true && !(await permit)) return false
        // Answered with `subscribed`, then acked, once the transport
        // confirmed this instance's interest, so a publish made on any
        // instance after either reaches the client. A broker that is down
        // refuses at once, and a hung Redis is dropped by the connection
        // watchdog, which rejects the SUBSCRIBE: the answer is then late by
        // at most the stall detection time, never held until the broker
        // returns (the interest is restored then).
        if (!(await this.#subscriptions.add(connection, topic, since))) {
          this.#error(connection, ErrorCodes.tooManyTopics, `at most ${this.#maxTopics} topics per connection`, message.id)
          return false
        }
        // On a presence topic the ack also means listed everywhere.
        await this.#presence.settled(connection, topic)
        return true
      }
      case 'presence': {
        const frame = message as PresenceFrame
        // Who may subscribe may see who is there; authorize may say more.
        const permit = this.#permit(connection, this.#policy.subscribeRefusal(connection, frame.topic), 'presence', frame.topic, frame.id)
        if (permit !== true && !(await permit)) return false
        // The page is the answer and carries the id: no separate ack.
        this.#reply(connection, await presenceReply(this.#presence, connection, frame))
        return false
      }
      case 'history': {
        const frame = message as HistoryFrame
        // Who may subscribe may read what subscribers received.
        const permit = this.#permit(connection, this.#policy.subscribeRefusal(connection, frame.topic), 'subscribe', frame.topic, frame.id)
        if (permit !== true && !(await permit)) return false
        this.#connections.write(connection, await historyReply(this.#history, frame))
        return false
      }
      case 'unsubscribe':
        await this.#subscriptions.remove(connection, (message as UnsubscribeFrame).topic)
        return true
      case 'publish': {
        const frame = message as PublishFrame
        const permit = this.#permit(connection, this.#policy.publishRefusal(connection, frame.topic, connection.topics.has(frame.topic)), 'publish', frame.topic, frame.id)
        if (permit !== true && !(await permit)) return false
        const invalid = this.#policy.invalidMessage(frame.topic, frame.message)
        if (invalid !== null) {
          this.#error(connection, ErrorCodes.invalidMessage, invalid, frame.id)
          return false
        }
        this.#maybeEcho(connection, frame.message)
        const out = withSender(connection, { type: 'publish', topic: frame.topic, message: frame.message })
        if (this.#history?.routes(frame.topic, frame.idempotencyKey) === true) {
          // Appended first: acked with the offset it got.
          const ack = await publishThroughHistory(this.#dispatcher, frame.topic, out, frame.idempotencyKey, frame.id)
          if (ack !== null) this.#reply(connection, ack)
          return false
        }
        // Acked after local delivery, as a broadcast is.
        this.#dispatcher.dispatch({ kind: 'topic', topic: frame.topic }, out)
        return true
      }
    }
  }

  async #custom (connection: Connection, message: ClientFrame): Promise<boolean> {
    // Called as a method: a class-based service keeps its `this`.
    if (this.#service.onMessage === undefined) {
      this.#error(connection, ErrorCodes.unknownType, `unknown message type "${message.type}"`, message.id)
      return false
    }
    await this.#service.onMessage(message, this.context(connection))
    return true
  }

  #failed (connection: Connection, err: unknown, message: ClientFrame): void {
    if (err instanceof HubProtocolError) {
      this.#error(connection, err.code, err.message, message.id)
      return
    }
    this.counters.serviceErrors++
    this.#log.error({ err, clientId: connection.id, type: message.type }, 'ws-hub: message handler failed')
    this.#error(connection, ErrorCodes.serviceError, 'the server could not handle this message', message.id)
  }

  /**
   * A rule's refusal (computed by the caller), else `authorize`'s answer;
   * a refusal is answered here. `true` synchronously when nothing needs
   * awaiting, so an allowed frame keeps its place in the client's order.
   */
  #permit (connection: Connection, refusal: Refusal | null, action: Action, topic: string | undefined, id: MessageId | undefined): boolean | Promise<boolean> {
    if (refusal !== null) {
      this.#error(connection, refusal.code, refusal.message, id)
      return false
    }
    const allowed = this.#authorizer.allows(connection, action, topic)
    if (allowed === true) return true
    return allowed.then((ok) => {
      if (!ok) this.#error(connection, ErrorCodes.forbidden, `not authorized to ${action}${topic === undefined ? '' : ` ${topic}`}`, id)
      return ok
    })
  }

  #maybeEcho (connection: Connection, message: unknown): void {
    if (this.#echo) this.#reply(connection, { type: 'echo', message })
  }

  #reply (connection: Connection, frame: OutgoingFrame): void {
    this.#connections.write(connection, serializeFrame(frame))
  }

  #error (connection: Connection, code: string, text: string, id: MessageId | undefined): void {
    this.counters.errorsSent++
    // Malformed input is counted and logged rate-limited by telemetry: a
    // client sends as many bad frames as it likes, the log must not follow.
    const violation = errorCodeViolation(code)
    if (violation !== null) this.#telemetry.protocolViolation(violation, { clientId: connection.id, ip: connection.ip })
    const frame: OutgoingFrame = { type: 'error', code, message: text }
    if (id !== undefined) frame.id = id
    this.#reply(connection, frame)
  }
}

/**
 * `from` is the server-assigned client id and `fromUser` the authenticated
 * user: never values the client wrote.
 */
function withSender (connection: Connection, frame: OutgoingFrame): OutgoingFrame {
  frame.from = connection.id
  if (connection.userId !== null) frame.fromUser = connection.userId
  return frame
}

/** The id of a frame that failed validation, if it carried a usable one. */
function idOf (frame: unknown): MessageId | undefined {
  if (frame === null || typeof frame !== 'object') return undefined
  const id = (frame as { id?: unknown }).id
  return (typeof id === 'string' && id.length <= 128) || typeof id === 'number' ? id : undefined
}

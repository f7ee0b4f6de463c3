import type { RawData } from 'ws'
import type { FastifyBaseLogger } from 'fastify'
import type { Connection } from './connection.js'
import { serializeFrame } from './frame.js'
import type { ConnectionManager } from './connection-manager.js'
import type { MessageDispatcher } from './message-dispatcher.js'
import { HubProtocolError, type HubService, type ServiceContext } from './service.js'
import {
  ErrorCodes,
  isBuiltInType,
  validateBuiltIn,
  validateEnvelope,
  type BroadcastFrame,
  type ClientFrame,
  type DirectFrame,
  type OutgoingFrame,
  type PublishFrame,
  type SubscribeFrame,
  type UnsubscribeFrame
} from './protocol.js'

export interface ProtocolHandlerOptions {
  connections: ConnectionManager
  dispatcher: MessageDispatcher
  service: HubService
  echo: boolean
  log: FastifyBaseLogger
}

export type MessageId = string | number

export interface InboundCounters {
  messagesIn: number
  errorsSent: number
  serviceErrors: number
}

/** Turns one client frame into actions, and answers every bad one with an error frame. */
export class ProtocolHandler {
  readonly counters: InboundCounters = { messagesIn: 0, errorsSent: 0, serviceErrors: 0 }
  readonly #connections: ConnectionManager
  readonly #dispatcher: MessageDispatcher
  readonly #service: HubService
  readonly #echo: boolean
  readonly #log: FastifyBaseLogger

  constructor (options: ProtocolHandlerOptions) {
    this.#connections = options.connections
    this.#dispatcher = options.dispatcher
    this.#service = options.service
    this.#echo = options.echo
    this.#log = options.log
  }

  context (connection: Connection): ServiceContext {
    return {
      client: connection.info(this.#connections.instanceId),
      reply: (frame) => { this.#connections.write(connection, serializeFrame(frame)) },
      dispatcher: this.#dispatcher,
      connections: this.#connections,
      log: this.#log
    }
  }

  async handle (connection: Connection, data: RawData, isBinary: boolean): Promise<void> {
    this.counters.messagesIn++
    if (isBinary) {
      this.#error(connection, ErrorCodes.unsupportedBinary, 'binary frames are not supported; send JSON text', undefined)
      return
    }
    let frame: unknown
    try {
      frame = JSON.parse(data.toString())
    } catch {
      this.#error(connection, ErrorCodes.invalidJson, 'message is not valid JSON', undefined)
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
        this.#maybeEcho(connection, frame.message)
        await this.#dispatcher.send({ kind: 'all' }, { type: 'message', from: connection.id, message: frame.message })
        return true
      }
      case 'direct': {
        const frame = message as DirectFrame
        this.#maybeEcho(connection, frame.message)
        const report = await this.#dispatcher.send(
          { kind: 'client', id: frame.target },
          { type: 'direct', from: connection.id, message: frame.message }
        )
        if (report.recipients === 0 && report.remoteInstances === 0) {
          this.#error(connection, ErrorCodes.unknownTarget, `no client with id ${frame.target}`, frame.id)
          return false
        }
        return true
      }
      case 'subscribe':
        this.#connections.subscribe(connection, (message as SubscribeFrame).topic)
        return true
      case 'unsubscribe':
        this.#connections.unsubscribe(connection, (message as UnsubscribeFrame).topic)
        return true
      case 'publish': {
        const frame = message as PublishFrame
        this.#maybeEcho(connection, frame.message)
        await this.#dispatcher.send(
          { kind: 'topic', topic: frame.topic },
          { type: 'publish', topic: frame.topic, from: connection.id, message: frame.message }
        )
        return true
      }
    }
  }

  async #custom (connection: Connection, message: ClientFrame): Promise<boolean> {
    const onMessage = this.#service.onMessage
    if (onMessage === undefined) {
      this.#error(connection, ErrorCodes.unknownType, `unknown message type "${message.type}"`, message.id)
      return false
    }
    await onMessage(message, this.context(connection))
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

  #maybeEcho (connection: Connection, message: unknown): void {
    if (this.#echo) this.#reply(connection, { type: 'echo', message })
  }

  #reply (connection: Connection, frame: OutgoingFrame): void {
    this.#connections.write(connection, serializeFrame(frame))
  }

  #error (connection: Connection, code: string, text: string, id: MessageId | undefined): void {
    this.counters.errorsSent++
    const frame: OutgoingFrame = { type: 'error', code, message: text }
    if (id !== undefined) frame.id = id
    this.#reply(connection, frame)
  }
}

/** The id of a frame that failed validation, if it carried a usable one. */
function idOf (frame: unknown): MessageId | undefined {
  if (frame === null || typeof frame !== 'object') return undefined
  const id = (frame as { id?: unknown }).id
  return (typeof id === 'string' && id.length <= 128) || typeof id === 'number' ? id : undefined
}

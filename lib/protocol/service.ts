import type { FastifyBaseLogger } from 'fastify'
import type { ConnectionInfo } from '../connections/connection.js'
import type { MessageDispatcher } from '../dispatch/message-dispatcher.js'
import type { ConnectionManager } from '../connections/connection-manager.js'
import type { ClientFrame, OutgoingFrame } from './frames.js'

/** What a service hook is given: who it is about, and the hub's tools. */
export interface ServiceContext {
  client: ConnectionInfo
  /** Sends a frame to this client only. `timestamp` is added. */
  reply: (frame: OutgoingFrame) => void
  dispatcher: MessageDispatcher
  connections: ConnectionManager
  log: FastifyBaseLogger
}

export interface DisconnectInfo {
  code: number
  reason: string
}

/**
 * The business rules. Built-in message types work without a service; any
 * other `type` goes to `onMessage`. A hook may be async; when the client
 * asked for an ack (`id`), it is sent once the returned promise settles.
 */
export interface HubService {
  onConnect?: (context: ServiceContext) => void | Promise<void>
  onMessage?: (message: ClientFrame, context: ServiceContext) => void | Promise<void>
  onDisconnect?: (context: ServiceContext, info: DisconnectInfo) => void | Promise<void>
}

/**
 * Throw this from `onMessage` to answer the client with an error frame of
 * your own code instead of the generic `service_error`.
 */
export class HubProtocolError extends Error {
  override name = 'HubProtocolError'
  readonly code: string

  constructor (code: string, message: string) {
    super(message)
    this.code = code
  }
}

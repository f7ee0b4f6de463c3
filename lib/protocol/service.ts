import type { FastifyBaseLogger } from 'fastify'
import type { ConnectionInfo } from '../connections/connection.js'
import type { WsHub } from '../hub.js'
import type { ClientFrame, OutgoingFrame } from './frames.js'

/** What a service hook is given: who it is about, and the hub's tools. */
export interface ServiceContext {
  client: ConnectionInfo
  /** Sends a frame to this client only. `timestamp` is added. */
  reply: (frame: OutgoingFrame) => void
  /** The same facade as `fastify.wsHub`: broadcast, publish, sendTo, close, get, list, ... */
  hub: WsHub
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

export { HubProtocolError } from '../errors.js'

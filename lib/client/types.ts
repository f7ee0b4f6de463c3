/**
 * The client's types, derived from the same TypeBox schemas the server
 * validates with. Type-only imports: nothing here exists at run time, so
 * the compiled client loads in a browser without a bundler.
 */
import type { Static } from 'typebox'
import type {
  BroadcastFrameSchema,
  DirectFrameSchema,
  PingFrameSchema,
  PresenceFrameSchema,
  PublishFrameSchema,
  ServerFrames,
  SubscribeFrameSchema,
  UnsubscribeFrameSchema
} from '../protocol/frames.js'

/** Every built-in server frame, by `type`. */
export type ServerFrameMap = { [K in keyof typeof ServerFrames]: Static<typeof ServerFrames[K]> }
export type ServerFrameType = keyof ServerFrameMap
export type WelcomeFrame = ServerFrameMap['welcome']
export type AckFrame = ServerFrameMap['ack']
export type PongFrame = ServerFrameMap['pong']
export type ErrorFrame = ServerFrameMap['error']
export type SubscribedFrame = ServerFrameMap['subscribed']
export type UnsubscribedFrame = ServerFrameMap['unsubscribed']
/** The answer to `presence()`: one page of a presence topic's members and its counts. */
export type PresenceReplyFrame = ServerFrameMap['presence']
/** A user (or, per the topic's rules, a connection) joined or left a `joinLeave` topic this client is subscribed to. */
export type JoinFrame = ServerFrameMap['join']
export type LeaveFrame = ServerFrameMap['leave']
/** Only a wrapper: the client handles its frames one by one and never emits it. */
export type BatchFrame = ServerFrameMap['batch']

/** A frame of a type the hub does not define: what a service sends with `reply`. */
export interface CustomServerFrame {
  type: string
  timestamp?: string
  [key: string]: unknown
}
export type InboundFrame = ServerFrameMap[ServerFrameType] | CustomServerFrame

export type BroadcastFrame = Static<typeof BroadcastFrameSchema>
export type DirectFrame = Static<typeof DirectFrameSchema>
export type SubscribeFrame = Static<typeof SubscribeFrameSchema>
export type UnsubscribeFrame = Static<typeof UnsubscribeFrameSchema>
export type PublishFrame = Static<typeof PublishFrameSchema>
export type PingFrame = Static<typeof PingFrameSchema>
export type PresenceRequestFrame = Static<typeof PresenceFrameSchema>

/** Any frame `request` may send; the client sets `id`. */
export interface OutgoingClientFrame {
  type: string
  [key: string]: unknown
}

export type HubClientState = 'connecting' | 'open' | 'reconnecting' | 'closed'

/**
 * The part of the WebSocket API the client uses. Browsers' WebSocket,
 * Node 22's global WebSocket and the `ws` package all have it.
 */
export interface WebSocketLike {
  readonly readyState: number
  send: (data: string) => void
  close: (code?: number, reason?: string) => void
  addEventListener: (type: string, listener: (event: SocketEvent) => void) => void
  /** Only `ws` has it: drops the TCP connection without a closing handshake. */
  terminate?: () => void
}

/** The fields of the events the client reads: `data` of a message, `code`/`reason` of a close. */
export interface SocketEvent {
  data?: unknown
  code?: number
  reason?: string
}

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike

/** A topic that could not be subscribed again after a reconnect. */
export interface ResubscribeFailure {
  topic: string
  error: Error
}

/** Events that are not frames: the connection's life. */
export interface LifecycleEvents {
  /** A welcome arrived and the topics were subscribed again. */
  open: { clientId: string, userId: string | undefined, reconnected: boolean, resubscribeFailures: ResubscribeFailure[] }
  /** A socket closed (or was given up for dead, with code 1006). */
  close: { code: number, reason: string, willReconnect: boolean }
  /** A reconnect is scheduled in `delayMs`. */
  reconnecting: { attempt: number, delayMs: number }
  state: { state: HubClientState, previous: HubClientState }
  /** The server sent something that is not a JSON object with a string `type`. */
  'invalid-frame': { data: unknown, error: string }
  /** Every frame, whatever its type. */
  '*': InboundFrame
}

/** Server frames by type, less `batch`, whose frames arrive as events of their own. */
export type HubClientEvents = Omit<ServerFrameMap, 'batch'> & LifecycleEvents

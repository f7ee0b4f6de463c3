/**
 * The client's types, derived from the same TypeBox schemas the server
 * validates with. Type-only imports: nothing here exists at run time, so
 * the compiled client loads in a browser without a bundler.
 */
import type { Static, TSchema } from 'typebox'
import type * as Frames from '../protocol/frames.js'
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
export type UnsubscribedFrame = ServerFrameMap['unsubscribed']
/** The answer to `presence()`: one page of a presence topic's members and its counts. */
export type PresenceReplyFrame = ServerFrameMap['presence']
/** A user (or, per the topic's rules, a connection) joined or left a `joinLeave` topic this client is subscribed to. */
export type JoinFrame = ServerFrameMap['join']
export type LeaveFrame = ServerFrameMap['leave']
/** Only a wrapper: the client handles its frames one by one and never emits it. */
export type BatchFrame = ServerFrameMap['batch']

/** Where a history topic stands: the offset of its last publication (0 before the first) and the stream's epoch. */
export interface StreamPosition {
  offset: number
  epoch: string
}

// History fields (issue 12). Each type below is the protocol schema's once
// frames.ts declares it, and the shape of the spec until then: the `infer`
// picks the schema when it exists, so nothing here needs editing when it lands.
type SchemaOr<Name extends string, Fallback> = typeof Frames extends Record<Name, infer S extends TSchema> ? Static<S> : Fallback
type ServerFrameOr<Type extends string, Fallback> = ServerFrameMap extends Record<Type, infer F> ? F : Fallback

/** A publication; one into a history topic carries its `offset` and `epoch`. */
export type PublicationFrame = ServerFrameMap['publish'] & Partial<StreamPosition>
/**
 * This connection now receives the topic. For a history topic it carries
 * the current `offset` and `epoch`, and `recovered` when `since` was sent:
 * `true` after the missed publications were replayed, `false` when they
 * could not be (then nothing was replayed).
 */
export type SubscribedFrame = ServerFrameMap['subscribed'] & Partial<StreamPosition> & { recovered?: boolean }
/** The server could not keep a history topic gapless for this connection: the app reloads its state. */
export type ResetFrame = ServerFrameOr<'reset', { type: 'reset', topic: string, timestamp: string } & StreamPosition>
/** The answer to `history()`: publications (publish frames) after `since`, oldest first, and where the topic stands. */
export type HistoryReplyFrame = ServerFrameOr<'history', {
  type: 'history'
  topic: string
  publications: PublicationFrame[]
  id?: string | number
  timestamp: string
} & StreamPosition>
/** `ack` of a publish; for a history topic it carries the publication's offset and epoch. */
export type PublishAckFrame = AckFrame & Partial<StreamPosition>

/** A frame of a type the hub does not define: what a service sends with `reply`. */
export interface CustomServerFrame {
  type: string
  timestamp?: string
  [key: string]: unknown
}
export type InboundFrame = ServerFrameMap[ServerFrameType] | PublicationFrame | SubscribedFrame | ResetFrame | HistoryReplyFrame | CustomServerFrame

/** The frames that answer a request by its id, by the type the request expects. */
export interface ReplyMap {
  ack: AckFrame
  pong: PongFrame
  presence: PresenceReplyFrame
  history: HistoryReplyFrame
}

export type BroadcastFrame = Static<typeof BroadcastFrameSchema>
export type DirectFrame = Static<typeof DirectFrameSchema>
export type SubscribeFrame = Static<typeof SubscribeFrameSchema> & { since?: StreamPosition }
export type UnsubscribeFrame = Static<typeof UnsubscribeFrameSchema>
export type PublishFrame = Static<typeof PublishFrameSchema> & { idempotencyKey?: string }
export type HistoryRequestFrame = SchemaOr<'HistoryFrameSchema', {
  type: 'history'
  topic: string
  since?: StreamPosition
  limit?: number
  id?: string | number
}>
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
  /**
   * After a reconnect, a history topic's missed publications (`count` of
   * them) were delivered as `publish` events before this one, and the live
   * ones follow: nothing was lost.
   */
  recovered: { topic: string, count: number }
  /**
   * A history topic's publications were lost for this client (it was away
   * longer than the history window, or the stream itself was lost, with a
   * new `epoch`): reload the state this topic feeds. Publications after
   * `offset` follow as `publish` events.
   */
  reset: { topic: string } & StreamPosition
}

/**
 * Server frames by type, less `batch`, whose frames arrive as events of
 * their own, and `reset`, which arrives as the lifecycle event.
 */
export type HubClientEvents = Omit<ServerFrameMap, 'batch' | 'publish' | 'subscribed' | 'reset'> & {
  publish: PublicationFrame
  subscribed: SubscribedFrame
} & LifecycleEvents

/**
 * `fastify-ws-hub/client`: a typed client of the hub's wire protocol for
 * browsers and Node. No runtime dependency: in a browser the compiled files
 * load as plain ES modules; in Node without a global WebSocket it imports
 * `ws`, and only then.
 */
export { HubClient } from './hub-client.js'
export { CLIENT_DEFAULTS, type HubClientOptions } from './options.js'
export { HubClientError, ClientErrorCodes, type HubClientErrorDetails } from './errors.js'
export { backoffDelay, normalizeBackoff, DEFAULT_BACKOFF, type BackoffOptions } from './backoff.js'
export type { HistoryOptions, PresencePage, PublishOptions } from './request-frames.js'
export type {
  AckFrame,
  BatchFrame,
  BroadcastFrame,
  CustomServerFrame,
  DirectFrame,
  ErrorFrame,
  HistoryReplyFrame,
  HistoryRequestFrame,
  HubClientEvents,
  HubClientState,
  InboundFrame,
  LifecycleEvents,
  OutgoingClientFrame,
  PingFrame,
  PongFrame,
  PresenceReplyFrame,
  JoinFrame,
  LeaveFrame,
  PublicationFrame,
  PublishAckFrame,
  PublishFrame,
  ResetFrame,
  ResubscribeFailure,
  ServerFrameMap,
  ServerFrameType,
  SocketEvent,
  StreamPosition,
  SubscribedFrame,
  SubscribeFrame,
  UnsubscribeFrame,
  WebSocketConstructor,
  WebSocketLike,
  WelcomeFrame
} from './types.js'

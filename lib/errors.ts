/**
 * Every error the hub throws at its users. Each has a stable `code`, so a
 * caller can branch on `err.code` without matching message text, and each
 * keeps its `cause` when it wraps another failure.
 */
export const HubErrorCodes = {
  /** An option is missing, unknown or out of range; thrown by `register`. */
  invalidOption: 'WS_HUB_INVALID_OPTION',
  /** A backend was chosen whose npm package is not installed (ioredis, kafkajs). */
  missingPackage: 'WS_HUB_MISSING_PACKAGE',
  /** The transport between instances failed to start, publish or subscribe. */
  transport: 'WS_HUB_TRANSPORT',
  /** The limiter or directory (cluster state) failed. */
  clusterState: 'WS_HUB_CLUSTER_STATE',
  /** A message between instances could not be decoded. */
  envelope: 'WS_HUB_ENVELOPE',
  /** Another instance did not answer a request in time. */
  queryTimeout: 'WS_HUB_QUERY_TIMEOUT',
  /** The hub is closing or closed. */
  closed: 'WS_HUB_CLOSED',
  /** A call on the facade with an argument it cannot use. */
  invalidArgument: 'WS_HUB_INVALID_ARGUMENT',
  /** A message published into a topic does not match the topic's `schema`. */
  invalidMessage: 'WS_HUB_INVALID_MESSAGE',
  /** A presence listing of a topic whose rules do not set `presence: true`. */
  presenceOff: 'WS_HUB_PRESENCE_OFF',
  /** A history read of a topic whose rules keep no history. */
  historyOff: 'WS_HUB_HISTORY_OFF',
  /** An event source failed to read, acknowledge or dead-letter; logged with its state, the source retries. */
  source: 'WS_HUB_SOURCE',
  /** An ordered source's lease could not be taken, renewed or released. */
  lease: 'WS_HUB_LEASE'
} as const

export type ErrorCode = typeof HubErrorCodes[keyof typeof HubErrorCodes]

export class HubError extends Error {
  override name = 'HubError'
  readonly code: string

  constructor (code: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
  }
}

/**
 * A HubError subclass with a fixed code: one line per error kind, and
 * `instanceof` still tells them apart.
 */
function coded (name: string, code: string) {
  return class extends HubError {
    override name = name
    constructor (message: string, options?: { cause?: unknown }) {
      super(code, message, options)
    }
  }
}

export class OptionsError extends coded('OptionsError', HubErrorCodes.invalidOption) {}
export class MissingPackageError extends coded('MissingPackageError', HubErrorCodes.missingPackage) {}
export class TransportError extends coded('TransportError', HubErrorCodes.transport) {}
export class ClusterStateError extends coded('ClusterStateError', HubErrorCodes.clusterState) {}
export class EnvelopeError extends coded('EnvelopeError', HubErrorCodes.envelope) {}
export class QueryTimeoutError extends coded('QueryTimeoutError', HubErrorCodes.queryTimeout) {}
export class HubClosedError extends coded('HubClosedError', HubErrorCodes.closed) {}
export class InvalidArgumentError extends coded('InvalidArgumentError', HubErrorCodes.invalidArgument) {}
export class InvalidMessageError extends coded('InvalidMessageError', HubErrorCodes.invalidMessage) {}
export class PresenceOffError extends coded('PresenceOffError', HubErrorCodes.presenceOff) {}
export class HistoryOffError extends coded('HistoryOffError', HubErrorCodes.historyOff) {}
export class SourceError extends coded('SourceError', HubErrorCodes.source) {}
export class LeaseError extends coded('LeaseError', HubErrorCodes.lease) {}

/**
 * Throw this from `onMessage` to answer the client with an error frame of
 * your own code instead of the generic `service_error`. Its `code` is the
 * wire code the client sees.
 */
export class HubProtocolError extends HubError {
  override name = 'HubProtocolError'
}

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
  invalidArgument: 'WS_HUB_INVALID_ARGUMENT'
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

export class OptionsError extends HubError {
  override name = 'OptionsError'
  constructor (message: string, options?: { cause?: unknown }) {
    super(HubErrorCodes.invalidOption, message, options)
  }
}

export class MissingPackageError extends HubError {
  override name = 'MissingPackageError'
  constructor (message: string, options?: { cause?: unknown }) {
    super(HubErrorCodes.missingPackage, message, options)
  }
}

export class TransportError extends HubError {
  override name = 'TransportError'
  constructor (message: string, options?: { cause?: unknown }) {
    super(HubErrorCodes.transport, message, options)
  }
}

export class ClusterStateError extends HubError {
  override name = 'ClusterStateError'
  constructor (message: string, options?: { cause?: unknown }) {
    super(HubErrorCodes.clusterState, message, options)
  }
}

export class EnvelopeError extends HubError {
  override name = 'EnvelopeError'
  constructor (message: string, options?: { cause?: unknown }) {
    super(HubErrorCodes.envelope, message, options)
  }
}

export class QueryTimeoutError extends HubError {
  override name = 'QueryTimeoutError'
  constructor (message: string, options?: { cause?: unknown }) {
    super(HubErrorCodes.queryTimeout, message, options)
  }
}

export class HubClosedError extends HubError {
  override name = 'HubClosedError'
  constructor (message: string) {
    super(HubErrorCodes.closed, message)
  }
}

export class InvalidArgumentError extends HubError {
  override name = 'InvalidArgumentError'
  constructor (message: string) {
    super(HubErrorCodes.invalidArgument, message)
  }
}

/**
 * Throw this from `onMessage` to answer the client with an error frame of
 * your own code instead of the generic `service_error`. Its `code` is the
 * wire code the client sees.
 */
export class HubProtocolError extends HubError {
  override name = 'HubProtocolError'
}

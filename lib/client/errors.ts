import type { ErrorFrame } from './types.js'

/**
 * Codes the client itself gives to a rejected request, next to the server's
 * own error codes (`unknown_target`, `invalid_message`, ...).
 */
export const ClientErrorCodes = {
  /** No `ack` (or `pong`) within `ackTimeoutMs`. */
  ackTimeout: 'ack_timeout',
  /** No `pong` within `pongTimeoutMs`; the socket is then given up for dead. */
  pongTimeout: 'pong_timeout',
  /** The socket closed before the answer came. */
  disconnected: 'disconnected',
  /** Sent while the client was not open. */
  notConnected: 'not_connected',
  /** `close()` was called. */
  closed: 'closed',
  /** `connect()` gave up: reconnecting is off, or the server closed with a code in `noReconnectCodes`. */
  connectFailed: 'connect_failed',
  /** The socket refused the frame. */
  sendFailed: 'send_failed'
} as const

export interface HubClientErrorDetails {
  /** The server's error frame, when the server refused the request. */
  frame?: ErrorFrame
  /** The close code, when the socket closed. */
  closeCode?: number
  cause?: unknown
}

/** Why a request or `connect()` failed. `code` is the server's error code or one of `ClientErrorCodes`. */
export class HubClientError extends Error {
  override name = 'HubClientError'
  readonly code: string
  readonly frame: ErrorFrame | undefined
  readonly closeCode: number | undefined

  constructor (code: string, message: string, details: HubClientErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause })
    this.code = code
    this.frame = details.frame
    this.closeCode = details.closeCode
  }
}

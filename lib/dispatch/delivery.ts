import type { Connection } from '../connections/connection.js'

/*
 * What a send resolves to and the options it takes: the dispatcher's
 * vocabulary, apart from its machinery, so the facade, REST and the
 * protocol handler can name them without the dispatcher's dependencies.
 */

export interface DeliveryReport {
  /** Clients of this instance that were written to. */
  recipients: number
  /**
   * Other instances the message was handed to through the transport. Their
   * client counts are not awaited: cross-instance delivery is at most once.
   */
  remoteInstances: number
  /** Set when a conflated publish was held for the end of its window. */
  conflated?: true
  /** A publish into a history topic: its offset (a duplicate key: the first publish's) and epoch. */
  offset?: number
  epoch?: string
}

/**
 * What `dispatch` did at once, and what is still under way with the other
 * instances, for callers that answer as soon as the local part is done.
 */
export interface Dispatch {
  /** Clients of this instance that were written to. */
  recipients: number
  /**
   * How many other instances hold a client or user target, once the
   * directory answered; 0 at once for a client held here and for fan-outs
   * (everyone, a topic). Rejects when the directory cannot answer: while the
   * registry is down or hangs, bounded by its outage detection.
   */
  holders: Promise<number>
  /**
   * Other instances the message was handed to, once the transport took it.
   * Never rejects: a failure is counted (`brokerPublishFailures`), logged
   * (rate-limited) and reported as 0.
   */
  remote: Promise<number>
}

export interface PublishCallOptions {
  /** Conflation key: keep only the latest message per key per throttle window. */
  conflate?: string
  /** The window, in ms. Default: the plugin's `conflateMs` (100). */
  throttleMs?: number
  /** A publish with a key seen in the topic within `idempotencyWindowMs` is not published again. */
  idempotencyKey?: string
}

export interface DispatchOptions {
  /** A local client that should not receive this frame. */
  exclude?: Connection
  /**
   * `remote` rejects when the other instances could not be reached (the
   * directory or the transport failed) instead of reporting 0: for a caller
   * that will send the message again (an event source), never for clients.
   */
  strict?: boolean
}

export interface DispatcherCounters {
  brokerPublishFailures: number
  /** Envelopes from other instances, stale ones included. */
  remoteEnvelopesIn: number
  /** Envelopes older than `maxEnvelopeAgeMs` on arrival, dropped unhandled. */
  staleEnvelopesDropped: number
}

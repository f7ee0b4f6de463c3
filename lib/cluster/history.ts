/**
 * A topic's recent publications, with the offsets that order them.
 *
 * Offsets are per topic, +1 per publication, starting at 1; "the current
 * offset" is the last publication's (0 before the first). The epoch names
 * one unbroken stream: it changes when the stream was lost (a Redis
 * restart without persistence), and offsets of different epochs are not
 * comparable. Within an epoch, the order of offsets is the order in which
 * publications were handed to the transport.
 */
export interface StreamPosition {
  offset: number
  epoch: string
}

/** One stored publication: the frame text exactly as subscribers receive it. */
export interface StoredPublication {
  offset: number
  frame: string
}

export interface HistoryRetention {
  /** Publications kept per topic. */
  size: number
  /** None older than this is returned. */
  ttlMs: number
}

export interface AppendRequest {
  topic: string
  retention: HistoryRetention
  /**
   * Builds the frame text once the offset and epoch are known, so the
   * stored text, the local delivery and the envelope are the same bytes.
   */
  frame: (position: StreamPosition) => string
  /** A publish already made with this key (within `idempotencyWindowMs`) is not appended again. */
  idempotencyKey?: string
  idempotencyWindowMs: number
}

export interface AppendResult extends StreamPosition {
  frame: string
  /** true when the key was seen: nothing was appended, and this is the first publish's position. */
  duplicate: boolean
}

export type ReadResult =
  | { ok: true, publications: StoredPublication[], position: StreamPosition }
  /** `since` is older than what is kept, from another epoch, or more than `limit` behind. */
  | { ok: false, position: StreamPosition }

/**
 * The history store. Delivery guarantees it gives: an appended publication
 * is readable by offset from every instance until it falls out of the
 * retention; `read(since)` returns exactly the publications after `since`,
 * in order, or says it cannot.
 */
export interface History {
  append: (request: AppendRequest) => Promise<AppendResult>
  /** Publications after `since`, at most `limit` of them (more is `ok: false`). */
  read: (topic: string, since: StreamPosition, limit: number, retention: HistoryRetention) => Promise<ReadResult>
  position: (topic: string) => Promise<StreamPosition>
  /** Idempotent. Closes only what the store itself opened. */
  close: () => Promise<void>
}

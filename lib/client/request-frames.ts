import type { HistoryRequestFrame, PresenceRequestFrame, PublishFrame, StreamPosition } from './types.js'

/** Options of `HubClient.publish`. */
export interface PublishOptions {
  /**
   * 1 to 128 characters. A retry with the same key on the same topic, within
   * the hub's `idempotencyWindowMs`, is not published again and is acked as
   * the first was (with its `offset` and `epoch` on a history topic).
   */
  idempotencyKey?: string
}

/** Options of `HubClient.history`. */
export interface HistoryOptions {
  /** Only the publications after this position; without it, every one kept. */
  since?: StreamPosition
  /** At most this many, oldest first. */
  limit?: number
}

/** Options of `HubClient.presence`: one page. */
export interface PresencePage {
  limit?: number
  /** From the previous page. */
  cursor?: string
}

// Optional fields are left out rather than sent as undefined, so the frame
// on the wire is exactly what the caller asked for.

export function publishFrame (topic: string, message: unknown, options: PublishOptions): PublishFrame {
  const frame: PublishFrame = { type: 'publish', topic, message }
  if (options.idempotencyKey !== undefined) frame.idempotencyKey = options.idempotencyKey
  return frame
}

export function historyFrame (topic: string, options: HistoryOptions): HistoryRequestFrame {
  const frame: HistoryRequestFrame = { type: 'history', topic }
  if (options.since !== undefined) frame.since = { offset: options.since.offset, epoch: options.since.epoch }
  if (options.limit !== undefined) frame.limit = options.limit
  return frame
}

export function presenceFrame (topic: string, page: PresencePage): PresenceRequestFrame {
  const frame: PresenceRequestFrame = { type: 'presence', topic }
  if (page.limit !== undefined) frame.limit = page.limit
  if (page.cursor !== undefined) frame.cursor = page.cursor
  return frame
}

import { HubProtocolError } from '../errors.js'
import type { MessageDispatcher, DeliveryReport } from '../dispatch/message-dispatcher.js'
import { ErrorCodes, type HistoryFrame, type OutgoingFrame } from '../protocol/frames.js'
import type { HistoryPage, TopicHistory } from './topic-history.js'

/**
 * A client's `history` frame: the page as a `history` frame carrying the
 * `id` (it is the answer, so no separate ack). The stored frame texts are
 * spliced in as they are, never parsed. `history_off` for a topic without
 * history; `unavailable` while the store cannot answer.
 */
export async function historyReply (history: TopicHistory | null, frame: HistoryFrame): Promise<Buffer> {
  let page: HistoryPage | null
  try {
    page = history === null ? null : await history.read(frame.topic, frame.since, frame.limit)
  } catch (err) {
    throw new HubProtocolError(ErrorCodes.unavailable, 'cannot read history: the history store is unavailable; try again later', { cause: err })
  }
  if (page === null) throw new HubProtocolError(ErrorCodes.historyOff, `topic ${frame.topic} keeps no history`)
  const tail: Record<string, unknown> = { offset: page.offset, epoch: page.epoch, complete: page.complete }
  if (frame.id !== undefined) tail.id = frame.id
  tail.timestamp = new Date().toISOString()
  const rest = JSON.stringify(tail).slice(1)
  return Buffer.from(`{"type":"history","topic":${JSON.stringify(frame.topic)},"publications":[${page.publications.join(',')}],${rest}`)
}

/**
 * A client's publish into a history topic, or with an idempotency key:
 * appended first, so it is acked after local delivery with its offset and
 * epoch (a duplicate: the first publish's). A store that fails is
 * `unavailable`: nothing was published.
 */
export async function publishThroughHistory (dispatcher: MessageDispatcher, topic: string, out: OutgoingFrame, idempotencyKey: string | undefined, id: string | number | undefined): Promise<OutgoingFrame | null> {
  let report: DeliveryReport
  try {
    report = await dispatcher.publishFrame(topic, out, idempotencyKey)
  } catch (err) {
    throw new HubProtocolError(ErrorCodes.unavailable, 'cannot publish: the history store is unavailable; try again later', { cause: err })
  }
  if (id === undefined) return null
  const ack: OutgoingFrame = { type: 'ack', id }
  if (report.offset !== undefined) {
    ack.offset = report.offset
    ack.epoch = report.epoch
  }
  return ack
}

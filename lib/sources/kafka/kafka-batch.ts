/** One fetched batch of a partition: handed to the runner in order, acknowledged as far as the hub took it. */
import type { EachBatchPayload } from 'kafkajs'
import type { SourceSink } from '../source.js'
import { KafkaRecord } from './kafka-records.js'

// Records per deliver. A fetch returns up to 1 MiB per partition
// (thousands of small records), and a deliver answers only once all its
// records settled; smaller steps commit and heartbeat along the way.
const DELIVER_MAX = 100

export interface BatchContext {
  sink: SourceSink
  /** Resolves when the source begins to close: a wait for the hub ends at once. */
  closed: Promise<void>
  closing: () => boolean
  /** How often a batch waiting for the hub tells the group it is alive. */
  heartbeatMs: number
}

/**
 * Delivers a batch and resolves the offset of each record the hub took;
 * the records after are left unresolved. kafkajs fetches a partition from
 * its last resolved offset (offsetManager.nextOffset), so what this batch
 * did not resolve is fetched again: nothing is skipped and nothing is
 * committed that the hub did not take.
 *
 * When the hub takes fewer than all, the batch waits here for
 * `sink.resumed()` rather than returning: returning would fetch the same
 * records again at once, in a loop. The fetcher waits for this batch
 * before its next fetch, so the wait also stops reading. Meanwhile it
 * heartbeats, so the group keeps this member; a heartbeat that finds the
 * group rebalancing throws, and kafkajs commits what was resolved and
 * rejoins (runner.js, processEachBatch and scheduleFetchManager). A batch
 * made stale by a seek, a consumer stopping, or the source closing ends
 * the batch at once, its unresolved records left for whoever reads next.
 */
export async function deliverBatch (payload: EachBatchPayload, context: BatchContext): Promise<void> {
  const { batch, resolveOffset, heartbeat, commitOffsetsIfNecessary, uncommittedOffsets, isRunning, isStale } = payload
  const { sink } = context
  const over = (): boolean => context.closing() || sink.closing || !isRunning() || isStale()
  const records = batch.messages.map((message) => new KafkaRecord(batch.topic, batch.partition, message))
  let next = 0
  while (next < records.length) {
    if (over()) return
    const chunk = records.slice(next, next + DELIVER_MAX)
    const taken = await sink.deliver(chunk)
    const last = chunk[taken - 1]
    if (last !== undefined) resolveOffset(last.message.offset)
    next += taken
    if (taken === chunk.length) {
      // Commits once autoCommitInterval has passed; kafkajs commits the rest when the batch ends.
      await commitOffsetsIfNecessary()
      await heartbeat()
      continue
    }
    // The hub may refuse for long: what it took is committed now, not when
    // the batch ends, so a crash meanwhile does not publish it again.
    await commitOffsetsIfNecessary(uncommittedOffsets())
    if (!(await hubTakes(payload, context, over))) return
  }
}

/** Waits for `sink.resumed()`, heartbeating; false when the batch is over first. */
async function hubTakes (payload: EachBatchPayload, context: BatchContext, over: () => boolean): Promise<boolean> {
  let resumed = false
  const waking = context.sink.resumed().then(() => { resumed = true })
  for (;;) {
    let timer: NodeJS.Timeout | undefined
    const beat = new Promise<void>((resolve) => { timer = setTimeout(resolve, context.heartbeatMs) })
    try {
      await Promise.race([waking, context.closed, beat])
    } finally {
      clearTimeout(timer)
    }
    if (over()) return false
    if (resumed) return true
    await payload.heartbeat()
  }
}

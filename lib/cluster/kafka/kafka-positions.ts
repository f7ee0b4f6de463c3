/** Where the Kafka transport's consumer is in each partition, kept in memory rather than committed. */
import type { Consumer } from 'kafkajs'

/**
 * The next offset to deliver, per partition. A consumer that rejoins its
 * group after a crash or a rebalance resumes from Kafka's last commit, which
 * lags what was already delivered; seeking back to this position instead,
 * and dropping anything read below it, is what keeps delivery at most once
 * and never duplicated.
 */
export class PartitionPositions {
  readonly #next = new Map<number, bigint>()

  /** Starts each partition at an offset: where it ended when start() began. */
  startAt (offsets: ReadonlyMap<number, bigint>): void {
    for (const [partition, offset] of offsets) this.#next.set(partition, offset)
  }

  /**
   * Queues a seek of each assigned partition to its position. Called on a
   * group join, before the generation's first fetch, which applies it.
   */
  seek (consumer: Consumer, topic: string, assigned: readonly number[]): void {
    for (const partition of assigned) {
      const offset = this.#next.get(partition)
      if (offset !== undefined) consumer.seek({ topic, partition, offset: offset.toString() })
    }
  }

  /** Moves past a record; false when the position was already past it (a record read again). */
  advance (partition: number, offset: string): boolean {
    const at = BigInt(offset)
    const next = this.#next.get(partition)
    if (next !== undefined && at < next) return false
    this.#next.set(partition, at + 1n)
    return true
  }
}

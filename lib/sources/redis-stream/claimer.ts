import type { Redis } from 'ioredis'
import { claim, reapConsumers } from './group.js'

export interface ClaimerOptions {
  streams: readonly string[]
  group: string
  consumer: string
  /** Entries unacknowledged this long are taken as their reader's dead. */
  claimIdleMs: number
  /** Ids claimed per stream per round, at most about: what one read takes. */
  count: number
}

/** How much longer than `claimIdleMs` a consumer with nothing pending idles before it is deleted. */
export const REAP_FACTOR = 10

/**
 * Hand-over between the consumers of a group. A hub instance that dies
 * leaves the entries it read and did not acknowledge in its pending list;
 * nothing reads them again unless another consumer claims them. Each round
 * claims, per stream, entries idle for `claimIdleMs` (XAUTOCLAIM, Redis
 * 6.2 and later) into this consumer's pending list, where the reader reads
 * them, and deletes consumers that have nothing pending and have idled
 * `REAP_FACTOR` times as long: every hub instance id ever started is a
 * consumer of the group until then, so without this they pile up without
 * bound. A consumer deleted while alive and idle loses nothing (the delete
 * checks it has nothing pending, atomically) and is created again by its
 * next read.
 *
 * A live instance that holds entries for longer than `claimIdleMs` (the
 * hub refused them for that long) may see them claimed by another: they
 * are then published twice, and the hub drops the second by the entry's
 * idempotency key.
 */
export class Claimer {
  readonly #options: ClaimerOptions
  /** Per stream, where the last round's scan of the pending list stopped. */
  readonly #cursors = new Map<string, string>()

  constructor (options: ClaimerOptions) {
    this.#options = options
  }

  /** One round: returns how many entries were claimed (the reader reads its pending list again when any were). */
  async round (client: Redis): Promise<number> {
    const { streams, group, consumer, claimIdleMs, count } = this.#options
    let claimed = 0
    for (const stream of streams) {
      const result = await claim(client, stream, group, consumer, claimIdleMs, this.#cursors.get(stream) ?? '0-0', count)
      this.#cursors.set(stream, result.cursor)
      claimed += result.claimed
      await reapConsumers(client, stream, group, consumer, claimIdleMs * REAP_FACTOR)
    }
    return claimed
  }

  /**
   * Claims every entry pending for any consumer, however recent, for the
   * holder of an `ordered` source's lease that just took it (see
   * `RedisStreamSource`). Returns how many.
   */
  async takeAll (client: Redis): Promise<number> {
    const { streams, group, consumer, count } = this.#options
    let claimed = 0
    for (const stream of streams) {
      let cursor = '0-0'
      do {
        const result = await claim(client, stream, group, consumer, 0, cursor, count)
        cursor = result.cursor
        claimed += result.claimed
      } while (cursor !== '0-0')
    }
    return claimed
  }
}

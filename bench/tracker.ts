import { performance } from 'node:perf_hooks'

/**
 * Counts measured deliveries for one window of sequence numbers at a time and
 * resolves with the time the last expected delivery arrived.
 */
export class DeliveryTracker {
  /** Deliveries outside the current window (late, duplicated or unexpected). */
  strays = 0
  #from = 0
  #to = 0
  #remaining = 0
  #done: ((at: number) => void) | null = null

  /**
   * Expects `copies` deliveries of each seq in [from, from + count); rejects
   * after `timeoutMs` with how many arrived.
   */
  expect (from: number, count: number, copies: number, timeoutMs: number): Promise<number> {
    if (this.#done !== null) throw new Error('tracker: a window is already open')
    this.#from = from
    this.#to = from + count
    this.#remaining = count * copies
    const expected = this.#remaining
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#done = null
        reject(new Error(`only ${expected - this.#remaining} of ${expected} deliveries of seq ${from}..${from + count - 1} within ${timeoutMs} ms`))
      }, timeoutMs)
      this.#done = (at) => {
        clearTimeout(timer)
        this.#done = null
        resolve(at)
      }
    })
  }

  onSeq (seq: number): void {
    if (seq < this.#from || seq >= this.#to || this.#done === null) {
      this.strays++
      return
    }
    if (--this.#remaining === 0) this.#done(performance.now())
  }
}

/** Nearest-rank percentile of unsorted samples. */
export function percentile (samples: number[], p: number): number {
  if (samples.length === 0) return Number.NaN
  const sorted = [...samples].sort((a, b) => a - b)
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)))
  return sorted[rank - 1] ?? Number.NaN
}

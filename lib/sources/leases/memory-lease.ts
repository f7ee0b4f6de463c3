import type { Lease } from './lease.js'
import { pause } from '../pause.js'

const holders = new Map<string, MemoryLease>()
const POLL_MS = 100

/**
 * A lease held in this process: for hubs without a shared registry, where
 * there is no other process to hand over to. Hubs in one process (tests)
 * still take turns.
 */
export class MemoryLease implements Lease {
  readonly #key: string
  #lost: () => void = () => {}

  constructor (key: string) {
    this.#key = key
  }

  async acquire (signal: AbortSignal): Promise<boolean> {
    while (!signal.aborted) {
      if (!holders.has(this.#key)) {
        holders.set(this.#key, this)
        return true
      }
      await pause(POLL_MS, signal)
    }
    return false
  }

  onLost (handler: () => void): void {
    this.#lost = handler
  }

  held (): boolean {
    return holders.get(this.#key) === this
  }

  async release (): Promise<void> {
    if (this.held()) holders.delete(this.#key)
  }

  /** Tests: as if the lease expired under this holder. */
  expire (): void {
    if (!this.held()) return
    holders.delete(this.#key)
    this.#lost()
  }
}

/** What the Kafka transport writes on records and reads off them: headers, addressing, retry duplicates. */
import type { KafkaMessage } from 'kafkajs'

/** The instances a record is for, as a JSON array; absent: every instance. */
export const TO_HEADER = 'ws-hub-to'
/** `<sender>/<sequence>`, unique per record, so a retry's second copy is recognised. */
export const ID_HEADER = 'ws-hub-id'

/**
 * Sequence numbers recently seen per sender. Memory is bounded twice: by the
 * window per sender and by the number of senders (least recently seen goes).
 */
export class RecentIds {
  readonly #senders = new Map<string, Set<number>>()
  readonly #window: number
  readonly #maxSenders: number

  /**
   * A kafkajs retry rewrites the one request in flight and nothing else of
   * that sender's is written in between, so a `window` larger than a request
   * catches every duplicate.
   */
  constructor (window: number, maxSenders = 256) {
    this.#window = window
    this.#maxSenders = maxSenders
  }

  /** Records the id; true when it was already recorded. */
  repeat (id: string): boolean {
    const cut = id.lastIndexOf('/')
    const sender = id.slice(0, cut)
    const seq = Number(id.slice(cut + 1))
    if (cut === -1 || !Number.isSafeInteger(seq)) return false
    let seen = this.#senders.get(sender)
    if (seen === undefined) {
      seen = new Set()
      if (this.#senders.size >= this.#maxSenders) {
        const oldest = this.#senders.keys().next()
        if (oldest.done !== true) this.#senders.delete(oldest.value)
      }
    } else {
      this.#senders.delete(sender)
    }
    this.#senders.set(sender, seen)
    if (seen.has(seq)) return true
    seen.add(seq)
    if (seen.size > this.#window) {
      const oldest = seen.values().next()
      if (oldest.done !== true) seen.delete(oldest.value)
    }
    return false
  }
}

export function header (record: KafkaMessage, name: string): string | undefined {
  const value = record.headers?.[name]
  if (value === undefined) return undefined
  const first = Array.isArray(value) ? value[0] : value
  return first === undefined ? undefined : first.toString()
}

export function addressedTo (to: string, instanceId: string): boolean {
  try {
    const list: unknown = JSON.parse(to)
    return Array.isArray(list) && list.includes(instanceId)
  } catch {
    return false
  }
}

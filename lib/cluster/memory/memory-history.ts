import type { AppendRequest, AppendResult, History, HistoryRetention, ReadResult, StreamPosition, StoredPublication } from '../history.js'
import { emptyCovers, epochOf, newBase } from '../history-epoch.js'

/** How often expired topics and idempotency keys are swept; expired ones are never returned meanwhile. */
const SWEEP_MS = 1_000

interface Entry extends StoredPublication {
  /** When it was appended (ms, this store's clock). */
  at: number
}

/** A topic's head and its kept publications (see `history-epoch.ts`). */
interface Head {
  epoch: string
  start: number
  offset: number
  /** Kept publications in offset order; `first` is the oldest's index, so dropping one costs O(1). */
  entries: Entry[]
  first: number
  ttlMs: number
  lastAt: number
}

interface Seen {
  result: AppendResult
  expiresAt: number
}

/** A monotonic ms clock near wall time: the ttl and epochs must not move with a clock adjustment. */
const clock = (): number => Math.floor(performance.timeOrigin + performance.now())

/**
 * One process's history. Every method does its work before its first
 * await, so each is atomic on Node's single thread: concurrent appends get
 * consecutive offsets. The epoch base is random per store, so a restarted
 * process starts new epochs. Nothing grows without bound: a topic holds at
 * most `size` publications and is deleted `ttlMs` after its last one (so a
 * topic with nothing retained holds no entry), and an idempotency key
 * lives for its window. A sweep every second removes both; until then they
 * are ignored by every read.
 */
export class MemoryHistory implements History {
  readonly #base = newBase()
  /** In order of last append, so the sweep stops at the first live one. */
  readonly #topics = new Map<string, Head>()
  /** "<topic>\n<key>" in order of first use (a topic has no newline). */
  readonly #seen = new Map<string, Seen>()
  #sweeper: NodeJS.Timeout | null = null
  #closed = false

  /** What is held, for tests and metrics. */
  get retained (): { topics: number, idempotencyKeys: number } {
    return { topics: this.#topics.size, idempotencyKeys: this.#seen.size }
  }

  async append (request: AppendRequest): Promise<AppendResult> {
    const { topic, retention, idempotencyKey } = request
    const now = clock()
    const seenKey = idempotencyKey === undefined ? null : `${topic}\n${idempotencyKey}`
    if (seenKey !== null) {
      const seen = this.#seen.get(seenKey)
      if (seen !== undefined && seen.expiresAt > now) return { ...seen.result, duplicate: true }
      if (seen !== undefined) this.#seen.delete(seenKey)
    }
    const head = this.#live(topic, now, retention.ttlMs)
    const epoch = head?.epoch ?? epochOf(this.#base, now)
    const offset = (head?.offset ?? 0) + 1
    // Built before anything changes: a frame builder that throws appends nothing.
    const frame = request.frame({ offset, epoch })
    const current = head ?? { epoch, start: now, offset: 0, entries: [], first: 0, ttlMs: retention.ttlMs, lastAt: now }
    current.offset = offset
    current.ttlMs = retention.ttlMs
    current.lastAt = now
    current.entries.push({ offset, frame, at: now })
    trimToSize(current, retention.size)
    // Re-inserted at the end: the map stays in order of last append.
    this.#topics.delete(topic)
    this.#topics.set(topic, current)
    const result: AppendResult = { offset, epoch, frame, duplicate: false }
    if (seenKey !== null) this.#seen.set(seenKey, { result, expiresAt: now + request.idempotencyWindowMs })
    this.#startSweeping()
    return result
  }

  async read (topic: string, since: StreamPosition, limit: number, retention: HistoryRetention): Promise<ReadResult> {
    const now = clock()
    const head = this.#live(topic, now, retention.ttlMs)
    if (head !== undefined) trimToSize(head, retention.size)
    const position = head === undefined ? { offset: 0, epoch: epochOf(this.#base, now) } : { offset: head.offset, epoch: head.epoch }
    let after: number
    if (head !== undefined && since.epoch === head.epoch) after = since.offset
    else if (since.offset === 0 && emptyCovers(since.epoch, this.#base, head?.start ?? null, now, retention.ttlMs)) after = 0
    else return { ok: false, position }
    if (!Number.isSafeInteger(after) || after < 0 || after > position.offset) return { ok: false, position }
    const missing = position.offset - after
    if (missing === 0 || head === undefined) return { ok: true, publications: [], position }
    if (missing > limit) return { ok: false, position }
    const oldest = head.entries[head.first]
    // The next one the reader needs is no longer kept: a gap, never a partial answer.
    if (oldest === undefined || oldest.offset > after + 1) return { ok: false, position }
    const from = head.first + (after + 1 - oldest.offset)
    const publications = head.entries.slice(from, from + missing).map(({ offset, frame }) => ({ offset, frame }))
    return { ok: true, publications, position }
  }

  async position (topic: string): Promise<StreamPosition> {
    const now = clock()
    const head = this.#live(topic, now, null)
    return head === undefined ? { offset: 0, epoch: epochOf(this.#base, now) } : { offset: head.offset, epoch: head.epoch }
  }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    if (this.#sweeper !== null) clearInterval(this.#sweeper)
    this.#sweeper = null
    this.#topics.clear()
    this.#seen.clear()
  }

  /**
   * The topic's head with its expired publications dropped (by `ttlMs`, or
   * the head's own when the caller has no retention), or undefined once
   * nothing is kept: the head goes with its last publication.
   */
  #live (topic: string, now: number, ttlMs: number | null): Head | undefined {
    const head = this.#topics.get(topic)
    if (head === undefined) return undefined
    const ttl = ttlMs ?? head.ttlMs
    const { entries } = head
    while (head.first < entries.length && now - (entries[head.first]?.at ?? now) > ttl) head.first++
    if (head.first >= entries.length) {
      this.#topics.delete(topic)
      return undefined
    }
    compact(head)
    return head
  }

  #startSweeping (): void {
    if (this.#sweeper !== null || this.#closed) return
    // Unref'd: a sweep must not keep a process alive.
    this.#sweeper = setInterval(() => { this.#sweep() }, SWEEP_MS).unref()
  }

  /**
   * Both maps are in insertion order, so the sweep stops at the first live
   * one. With different ttls (or windows) a short-lived one behind a long
   * one waits for it: everything still goes within the longest ttl.
   */
  #sweep (): void {
    const now = clock()
    for (const [topic, head] of this.#topics) {
      if (now - head.lastAt <= head.ttlMs) break
      this.#topics.delete(topic)
    }
    for (const [key, seen] of this.#seen) {
      if (seen.expiresAt > now) break
      this.#seen.delete(key)
    }
  }
}

function trimToSize (head: Head, size: number): void {
  const kept = head.entries.length - head.first
  if (kept > size) head.first += kept - size
  compact(head)
}

/** Drops the skipped front once it is most of the array: amortized O(1) per publication. */
function compact (head: Head): void {
  if (head.first > 64 && head.first * 2 > head.entries.length) {
    head.entries = head.entries.slice(head.first)
    head.first = 0
  }
}

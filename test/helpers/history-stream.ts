/**
 * Tools for the history fault tests (issue 12): a publisher that streams
 * numbered messages into a topic over REST and keeps the offset each one
 * was given, a check that a subscriber saw offsets first..last exactly once,
 * in order, each with the message published at that offset, and a
 * WebSocket class that lets a HubClient reconnect to another instance.
 */
import { WebSocket } from 'ws'
import type { HubClient, WebSocketConstructor } from '../../lib/client/index.js'
import type { Frame, TestClient } from '../helpers.js'

export interface Position {
  offset: number
  epoch: string
}

/** One publication as a subscriber saw it: its position and the `n` of its message. */
export interface Seen extends Position {
  n: number
}

/** The position a frame (publish, subscribed, reset) carries, if it carries one. */
export function positionOf (frame: unknown): Position | null {
  if (frame === null || typeof frame !== 'object') return null
  const { offset, epoch } = frame as { offset?: unknown, epoch?: unknown }
  return typeof offset === 'number' && typeof epoch === 'string' ? { offset, epoch } : null
}

/** A publish frame of `topic`, as seen; null for any other frame. */
export function seenOf (frame: unknown, topic: string): Seen | null {
  const f = frame as { type?: unknown, topic?: unknown, message?: { n?: unknown } }
  if (f.type !== 'publish' || f.topic !== topic) return null
  const position = positionOf(frame)
  const n = f.message?.n
  return { offset: position?.offset ?? NaN, epoch: position?.epoch ?? '', n: typeof n === 'number' ? n : NaN }
}

/** Every publication of `topic` a raw client received, in arrival order. */
export function seenBy (client: TestClient, topic: string): Seen[] {
  return client.frames.map((f) => seenOf(f, topic)).filter((s): s is Seen => s !== null)
}

/** The first frame of a type a raw client received, left in place so the order of frames stays readable. */
export function firstOf (client: TestClient, type: string): Frame | undefined {
  return client.frames.find((f) => f.type === type)
}

const TICK_MS = 10

/**
 * Publishes `{ n }` with n = 0, 1, 2… through `POST /api/topics/:topic/publish`
 * of one instance and keeps the position each answer gave. Publishes are
 * independent callers (not one after another), so `n` and the offset need
 * not rise together: the check compares each offset with the `n` answered
 * for it.
 */
export class Publisher {
  /** n -> the position its publish was answered with. */
  readonly positions = new Map<number, Position>()
  /** Publishes answered with something other than a position. */
  readonly failures: Array<{ n: number, detail: string }> = []
  #next = 0
  #inFlight = new Set<Promise<void>>()
  #timer: ReturnType<typeof setInterval> | undefined
  #stopped = false

  constructor (readonly baseUrl: string, readonly topic: string) {}

  get sent (): number {
    return this.#next
  }

  /** The highest offset answered: the stream's last once `stop` resolved. */
  get last (): Position {
    let last: Position = { offset: 0, epoch: '' }
    for (const p of this.positions.values()) if (p.offset > last.offset) last = p
    return last
  }

  /** `rate` publishes a second, kept to the clock rather than to a timer that drifts under load. */
  pace (rate: number): void {
    const startedAt = Date.now()
    const base = this.#next
    this.#timer = setInterval(() => {
      const due = base + Math.floor((Date.now() - startedAt) * rate / 1000)
      while (this.#next < due) this.#track(this.publish(this.#next++))
    }, TICK_MS)
  }

  /** `lanes` callers, each publishing again as soon as its previous publish answered. */
  flatOut (lanes: number): void {
    for (let lane = 0; lane < lanes; lane++) {
      this.#track((async () => {
        while (!this.#stopped) await this.publish(this.#next++)
      })())
    }
  }

  /** Stops and waits for every answer. */
  async stop (): Promise<void> {
    this.#stopped = true
    clearInterval(this.#timer)
    while (this.#inFlight.size > 0) await Promise.all([...this.#inFlight])
  }

  async publish (n: number): Promise<void> {
    try {
      const response = await fetch(`${this.baseUrl}/api/topics/${this.topic}/publish`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ message: { n } })
      })
      const text = await response.text()
      const position = response.ok ? positionOf(JSON.parse(text)) : null
      if (position === null) this.failures.push({ n, detail: `${response.status} ${text}` })
      else this.positions.set(n, position)
    } catch (err) {
      this.failures.push({ n, detail: String(err) })
    }
  }

  #track (publish: Promise<void>): void {
    this.#inFlight.add(publish)
    publish.finally(() => this.#inFlight.delete(publish)).catch(() => {})
  }
}

export interface Verdict {
  /** Publications seen. */
  received: number
  /** Offsets first..last. */
  expected: number
  /** Offsets seen more than once. */
  duplicates: number
  /** Offsets seen after a higher one (not counting duplicates). */
  outOfOrder: number
  /** Offsets of first..last never seen. */
  missing: number
  /** Publications whose message is not the one published at that offset, or outside first..last. */
  wrongPayload: number
  /** Distinct epochs seen. */
  epochs: number
}

/** The verdict a correct subscriber gets. */
export function perfect (first: number, last: number): Verdict {
  return { received: last - first + 1, expected: last - first + 1, duplicates: 0, outOfOrder: 0, missing: 0, wrongPayload: 0, epochs: 1 }
}

/**
 * Compares what a subscriber saw with offsets first..last of the stream.
 * Returns counts (so a failure prints a few numbers, not thousands of
 * frames) and the first problems in words.
 */
export function judge (seen: Seen[], publisher: Publisher, first: number, last: number): { verdict: Verdict, problems: string[] } {
  const byOffset = new Map<number, number>()
  for (const [n, p] of publisher.positions) byOffset.set(p.offset, n)
  const counted = new Set<number>()
  const problems: string[] = []
  const verdict: Verdict = { received: seen.length, expected: last - first + 1, duplicates: 0, outOfOrder: 0, missing: 0, wrongPayload: 0, epochs: new Set(seen.map((s) => s.epoch)).size }
  let highest = first - 1
  for (const [index, s] of seen.entries()) {
    if (counted.has(s.offset)) {
      verdict.duplicates++
      if (problems.length < 5) problems.push(`#${index}: offset ${s.offset} again`)
    } else if (s.offset < highest) {
      verdict.outOfOrder++
      if (problems.length < 5) problems.push(`#${index}: offset ${s.offset} after ${highest}`)
    }
    counted.add(s.offset)
    highest = Math.max(highest, s.offset)
    const published = byOffset.get(s.offset)
    const known = publisher.failures.some((f) => f.n === s.n)
    if (s.offset < first || s.offset > last || (published !== s.n && !(published === undefined && known))) {
      verdict.wrongPayload++
      if (problems.length < 5) problems.push(`#${index}: offset ${s.offset} carried n=${s.n}, published n=${String(published)}`)
    }
  }
  for (let offset = first; offset <= last; offset++) {
    if (counted.has(offset)) continue
    verdict.missing++
    if (problems.length < 5) problems.push(`offset ${offset} never seen`)
  }
  return { verdict, problems }
}

/** The highest offset seen so far, 0 if none. */
export function highestOf (seen: Seen[]): number {
  let highest = 0
  for (const s of seen) if (s.offset > highest) highest = s.offset
  return highest
}

/**
 * A WebSocket class for HubClient whose every socket goes to `url` as it is
 * at that moment, whatever URL the client asked for: a reconnect lands on
 * the instance the test points to, as a load balancer would route it.
 * `socket` is the latest, so a test can drop it without a close frame.
 */
export class Switchboard {
  url: string
  socket: WebSocket | null = null
  readonly WebSocket: WebSocketConstructor

  constructor (url: string) {
    this.url = url
    // The class closes over this board: HubClient constructs it with its own URL.
    const board = this
    class Switching extends WebSocket {
      constructor (_url: string, protocols?: string | string[]) {
        super(board.url, protocols)
        board.socket = this
      }
    }
    this.WebSocket = Switching as unknown as WebSocketConstructor
  }

  /** Drops the TCP connection: no close frame, as a phone losing its network. */
  terminate (): void {
    this.socket?.terminate()
  }
}

/** What a HubClient handed the application for one topic. */
export interface HubClientRecord {
  seen: Seen[]
  recovered: unknown[]
  resets: unknown[]
}

export function record (client: HubClient, topic: string): HubClientRecord {
  const out: HubClientRecord = { seen: [], recovered: [], resets: [] }
  client.on('publish', (frame: unknown) => {
    const seen = seenOf(frame, topic)
    if (seen !== null) out.seen.push(seen)
  })
  client.on('recovered', (event: unknown) => { out.recovered.push(event) })
  client.on('reset', (event: unknown) => { out.resets.push(event) })
  return out
}

export const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

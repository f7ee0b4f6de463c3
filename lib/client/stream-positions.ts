import type { LifecycleEvents, PublicationFrame, StreamPosition, SubscribedFrame } from './types.js'

type Emit = <K extends 'recovered' | 'reset'>(type: K, payload: LifecycleEvents[K]) => void

/**
 * Where this client stands in each history topic, so the application sees
 * every publication once and in order across reconnects.
 *
 * The last `{offset, epoch}` received is kept per topic (from publications
 * and from `subscribed`) for as long as the client lives, not per
 * connection: a reconnect, to this instance or any other, subscribes with
 * `since` and the server replays what was missed. A publication at or below
 * the last offset of the same epoch has been seen (a replay overlapping the
 * live stream, a retry) and is dropped.
 */
export class StreamPositions {
  readonly #positions = new Map<string, StreamPosition>()
  /** Topics subscribed with `since` and not yet answered: how many publications the replay has delivered so far. */
  readonly #recovering = new Map<string, number>()
  readonly #emit: Emit

  constructor (emit: Emit) {
    this.#emit = emit
  }

  get (topic: string): StreamPosition | undefined {
    const position = this.#positions.get(topic)
    return position === undefined ? undefined : { ...position }
  }

  /**
   * The `since` of a subscribe about to be sent (`given` replaces what was
   * remembered, e.g. a position the app stored across page loads), and the
   * topic counts replayed publications until `subscribed` answers.
   */
  since (topic: string, given?: StreamPosition): StreamPosition | undefined {
    if (given !== undefined) this.#positions.set(topic, { offset: given.offset, epoch: given.epoch })
    const position = this.get(topic)
    if (position !== undefined) this.#recovering.set(topic, 0)
    return position
  }

  /** Whether a publication is new to this client; a new one moves the topic's position. */
  accept (frame: PublicationFrame): boolean {
    const { topic, offset, epoch } = frame
    // A topic without history: nothing to order or de-duplicate.
    if (typeof offset !== 'number' || typeof epoch !== 'string') return true
    const last = this.#positions.get(topic)
    if (last !== undefined && last.epoch === epoch && offset <= last.offset) return false
    if (last !== undefined && last.epoch !== epoch && !continues(last, offset)) {
      // The stream was lost and started again, and this publication is the
      // first news of it: what came between is gone, so the app reloads,
      // and this publication (the new stream's) follows.
      this.#emit('reset', { topic, offset: offset - 1, epoch })
    }
    this.#positions.set(topic, { offset, epoch })
    const replayed = this.#recovering.get(topic)
    if (replayed !== undefined) this.#recovering.set(topic, replayed + 1)
    return true
  }

  /** The server's answer to a subscribe (the client's or its own): where the topic stands, and whether the replay worked. */
  subscribed (frame: SubscribedFrame): void {
    const { topic, offset, epoch } = frame
    const replayed = this.#recovering.get(topic)
    this.#recovering.delete(topic)
    if (typeof offset !== 'number' || typeof epoch !== 'string') return
    const last = this.#positions.get(topic)
    if (frame.recovered === true) {
      if (last === undefined || last.epoch !== epoch || last.offset < offset) this.#positions.set(topic, { offset, epoch })
      this.#emit('recovered', { topic, count: replayed ?? 0 })
      return
    }
    if (frame.recovered === false) {
      this.reset(topic, { offset, epoch })
      return
    }
    // No `since` was sent: a first subscribe, or the server subscribed this
    // connection itself (it cannot know what the client saw). Publications
    // missed since the last one seen cannot be replayed, so say so.
    if (last === undefined || (last.offset === 0 && offset === 0)) this.#positions.set(topic, { offset, epoch })
    else if (last.epoch !== epoch || last.offset < offset) this.reset(topic, { offset, epoch })
  }

  /** Recovery is impossible: the app reloads, and the topic continues from `position`. */
  reset (topic: string, position: StreamPosition): void {
    this.#recovering.delete(topic)
    this.#positions.set(topic, { offset: position.offset, epoch: position.epoch })
    this.#emit('reset', { topic, offset: position.offset, epoch: position.epoch })
  }

  /** The subscribe was refused or cut off: no replay is coming on this connection. */
  abandon (topic: string): void {
    this.#recovering.delete(topic)
  }

  /** Unsubscribed: a later subscribe starts afresh. */
  forget (topic: string): void {
    this.#recovering.delete(topic)
    this.#positions.delete(topic)
  }

  /** The connection is gone; its replays with it (positions stay for the next one). */
  disconnected (): void {
    this.#recovering.clear()
  }
}

/**
 * An idle topic keeps no stream, so its position is offset 0 of an epoch
 * meaning "empty at that moment", and its first publication starts a new
 * epoch at offset 1: that is a continuation, not a lost stream.
 */
function continues (last: StreamPosition, offset: number): boolean {
  return last.offset === 0 && offset === 1
}

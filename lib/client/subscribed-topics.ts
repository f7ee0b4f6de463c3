import { HubClientError } from './errors.js'
import type { ResubscribeFailure, SubscribedFrame, UnsubscribedFrame } from './types.js'

/**
 * The topics a client is subscribed to, by who asked. The client's own are
 * subscribed again after a reconnect; the server's end with the connection
 * (the server tells the new one what it holds, with `subscribed` frames), so
 * a reconnect never asks for a topic the server chose for it.
 */
export class SubscribedTopics {
  readonly #topics = new Map<string, 'client' | 'server'>()

  names (): string[] {
    return [...this.#topics.keys()]
  }

  /** The server acknowledged the client's own subscribe: the topic now outlives connections. */
  add (topic: string): void {
    this.#topics.set(topic, 'client')
  }

  delete (topic: string): void {
    this.#topics.delete(topic)
  }

  /**
   * What the server says this connection holds. A `subscribed` frame for a
   * topic the client asked for itself changes nothing: the client's claim is
   * the one that survives a reconnect.
   */
  apply (frame: SubscribedFrame | UnsubscribedFrame): void {
    if (frame.type === 'unsubscribed') this.#topics.delete(frame.topic)
    else if (!this.#topics.has(frame.topic)) this.#topics.set(frame.topic, 'server')
  }

  /** The connection is gone: the server's subscriptions were its own, and the next one is told its own. */
  dropServerTopics (): void {
    for (const [topic, by] of this.#topics) if (by === 'server') this.#topics.delete(topic)
  }

  /** The topics to subscribe again on a new connection. */
  own (): string[] {
    return [...this.#topics].filter(([, by]) => by === 'client').map(([topic]) => topic)
  }

  /**
   * The failures among a resubscribe's results (`results[i]` is the outcome
   * for `topics[i]`). A topic the server refused is forgotten, so the client
   * stops asking; one lost with the connection is retried on the next.
   */
  failures (topics: readonly string[], results: ReadonlyArray<PromiseSettledResult<unknown>>): ResubscribeFailure[] {
    const failures: ResubscribeFailure[] = []
    results.forEach((result, index) => {
      const topic = topics[index] as string
      if (result.status === 'fulfilled') return
      const error = result.reason instanceof Error ? result.reason : new Error(String(result.reason))
      failures.push({ topic, error })
      if (error instanceof HubClientError && error.frame !== undefined) this.#topics.delete(topic)
    })
    return failures
  }
}

import type { Transport } from '../cluster/transport.js'
import type { FailureLog } from './failure-log.js'

/**
 * Keeps the transport subscribed to exactly the topics that have a local
 * subscriber. Subscribe and unsubscribe calls of one topic run one after
 * another, so a quick leave-and-rejoin can never end unsubscribed; a topic
 * with nothing queued holds no entry.
 */
export class TopicInterest {
  readonly #transport: Transport | null
  readonly #failures: FailureLog
  /** The last queued transport call per topic; settles, never rejects. */
  readonly #queue = new Map<string, Promise<void>>()
  readonly #wanted = new Set<string>()

  constructor (transport: Transport | null, failures: FailureLog) {
    this.#transport = transport
    this.#failures = failures
  }

  opened (topic: string): void {
    this.#wanted.add(topic)
    this.#enqueue(topic, true)
  }

  closed (topic: string): void {
    this.#wanted.delete(topic)
    this.#enqueue(topic, false)
  }

  /**
   * Resolves once every transport call queued for the topic has settled: a
   * publish made after it reaches this instance whenever the backend is up.
   * A failed subscribe does not reject (the transport restores interest
   * when the backend returns); it is logged.
   */
  async ready (topic: string): Promise<void> {
    await this.#queue.get(topic)
  }

  #enqueue (topic: string, subscribe: boolean): void {
    const transport = this.#transport
    if (transport === null) return
    const previous = this.#queue.get(topic) ?? Promise.resolve()
    const next = previous.then(async () => {
      // Only the latest wish matters: a subscribe overtaken by a close is skipped.
      if (this.#wanted.has(topic) !== subscribe) return
      try {
        if (subscribe) await transport.subscribe(topic)
        else await transport.unsubscribe(topic)
      } catch (err) {
        this.#failures.record(err, { topic, action: subscribe ? 'subscribe' : 'unsubscribe' })
      }
    })
    this.#queue.set(topic, next)
    // `next` never rejects (its failure is recorded above), so this cannot leak a rejection.
    next.then(() => {
      if (this.#queue.get(topic) === next) this.#queue.delete(topic)
    }, noop)
  }
}

function noop (): void {}

import type { Envelope } from './envelope.js'

export type EnvelopeHandler = (envelope: Envelope) => void

export type TransportState = 'up' | 'down'

/** What the hub tells a transport at start. */
export interface TransportContext {
  /** The hub's `maxEnvelopeAgeMs`: receivers drop envelopes older than this. */
  maxEnvelopeAgeMs: number
}

/**
 * Carries envelopes between hub instances. Delivery is at most once: an
 * envelope published while the backend is unreachable may be lost, never
 * duplicated.
 *
 * Routing. `publish(envelope, to)` with `to` reaches exactly those
 * instances. Without `to`, a `deliver` envelope for a topic reaches only the
 * instances that subscribed to that topic (interest routing: the hub
 * subscribes when a topic's first local subscriber arrives and unsubscribes
 * when the last leaves); every other envelope reaches every instance.
 *
 * A transport never imports the hub; it calls back through the handler
 * given to `start`, and never hands an instance its own envelopes.
 */
export interface Transport {
  /** Resolves once the backend confirmed this instance's own routes. */
  start: (instanceId: string, onEnvelope: EnvelopeHandler, context?: TransportContext) => Promise<void>
  /**
   * Resolves once the backend accepted the envelope; rejects (with a coded
   * error) when it did not. A rejection means no instance handles the
   * envelope from then on: a publish whose fate is unknown (a timeout, a
   * reply lost with its connection) may still reach the backend later, so it
   * rejects only once the envelope is older than `maxEnvelopeAgeMs` and
   * every receiver drops it (`untilStale`).
   */
  publish: (envelope: Envelope, to?: readonly string[]) => Promise<void>
  /**
   * Resolves only once the backend confirmed the subscription, so a publish
   * made after it resolves reaches this instance. The interest is kept while
   * the backend is down and restored when it returns, even if this rejects.
   */
  subscribe: (topic: string) => Promise<void>
  unsubscribe: (topic: string) => Promise<void>
  state: () => TransportState
  /** Idempotent. Closes only what the transport itself opened. */
  close: () => Promise<void>
}

import type { Envelope } from './envelope.js'

export type EnvelopeHandler = (envelope: Envelope) => void

export type BrokerState = 'up' | 'down'

export interface PublishOptions {
  /**
   * Deliver only to these instances (a direct or user message whose holders
   * the registry knows). Omitted: every instance.
   */
  instances?: string[]
}

/**
 * Transport between hub instances. Delivery is at most once: an envelope
 * published while the backend is unreachable may be lost, never duplicated.
 *
 * A broker never imports the hub; it calls back through the handler given
 * to `start`. Envelopes whose origin is `instanceId` are not handed back.
 */
export interface Broker {
  /** Resolves once the backend has confirmed the subscription. */
  start: (instanceId: string, handler: EnvelopeHandler) => Promise<void>
  /** Resolves once the backend accepted the envelope (or it was dropped and counted). */
  publish: (envelope: Envelope, options?: PublishOptions) => Promise<void>
  state: () => BrokerState
  /** Idempotent. Closes only what the broker itself opened. */
  close: () => Promise<void>
}

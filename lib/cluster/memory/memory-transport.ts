import { EventEmitter } from 'node:events'
import type { Envelope } from '../envelope.js'
import type { Broker, BrokerState, EnvelopeHandler, PublishOptions } from '../transport.js'

/**
 * An in-process bus. Alone it costs nothing; share one `MemoryBus` between
 * several hubs in the same process (tests, workers) and they act as one.
 */
export class MemoryBus {
  readonly emitter = new EventEmitter()

  constructor () {
    // One listener per hub instance on the bus; many is normal, not a leak.
    this.emitter.setMaxListeners(0)
  }
}

export class MemoryBroker implements Broker {
  readonly #bus: MemoryBus
  #instanceId: string | null = null
  #listener: ((envelope: Envelope, options: PublishOptions) => void) | null = null

  constructor (bus: MemoryBus = new MemoryBus()) {
    this.#bus = bus
  }

  async start (instanceId: string, handler: EnvelopeHandler): Promise<void> {
    this.#instanceId = instanceId
    this.#listener = (envelope, options) => {
      if (envelope.origin === instanceId) return
      if (options.instances !== undefined && !options.instances.includes(instanceId)) return
      handler(envelope)
    }
    this.#bus.emitter.on('envelope', this.#listener)
  }

  async publish (envelope: Envelope, options: PublishOptions = {}): Promise<void> {
    // Asynchronous like a network broker, so local delivery never waits on
    // remote handlers and ordering assumptions hold for every backend.
    queueMicrotask(() => this.#bus.emitter.emit('envelope', envelope, options))
  }

  state (): BrokerState {
    return 'up'
  }

  async close (): Promise<void> {
    if (this.#listener !== null) this.#bus.emitter.off('envelope', this.#listener)
    this.#listener = null
    this.#instanceId = null
  }
}

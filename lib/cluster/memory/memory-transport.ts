import { EventEmitter } from 'node:events'
import { TransportError } from '../../errors.js'
import type { Envelope } from '../envelope.js'
import type { EnvelopeHandler, Transport, TransportState } from '../transport.js'

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

type BusListener = (envelope: Envelope, to: readonly string[] | undefined) => void

/**
 * Transport between hubs sharing a `MemoryBus`. Every envelope reaches every
 * listener, which keeps what is for it: interest lives in the receiving
 * instance, so subscribe and unsubscribe take effect at once.
 */
export class MemoryTransport implements Transport {
  readonly #bus: MemoryBus
  readonly #topics = new Set<string>()
  #listener: BusListener | null = null
  #closed = false

  constructor (bus: MemoryBus = new MemoryBus()) {
    this.#bus = bus
  }

  async start (instanceId: string, onEnvelope: EnvelopeHandler): Promise<void> {
    if (this.#closed) throw new TransportError('MemoryTransport: start() called after close()')
    if (this.#listener !== null) throw new TransportError('MemoryTransport: start() called twice')
    this.#listener = (envelope, to) => {
      if (envelope.origin === instanceId) return
      if (to !== undefined) {
        if (!to.includes(instanceId)) return
      } else if (envelope.type === 'deliver' && envelope.target.kind === 'topic' && !this.#topics.has(envelope.target.topic)) {
        return
      }
      onEnvelope(envelope)
    }
    this.#bus.emitter.on('envelope', this.#listener)
  }

  async publish (envelope: Envelope, to?: readonly string[]): Promise<void> {
    this.#assertRunning('publish')
    // Copied: the caller may reuse its array before the microtask runs.
    const recipients = to === undefined ? undefined : [...to]
    // Asynchronous like a network transport, so local delivery never waits on
    // remote handlers and ordering assumptions hold for every backend.
    queueMicrotask(() => this.#bus.emitter.emit('envelope', envelope, recipients))
  }

  async subscribe (topic: string): Promise<void> {
    this.#assertRunning('subscribe')
    this.#topics.add(topic)
  }

  async unsubscribe (topic: string): Promise<void> {
    this.#topics.delete(topic)
  }

  state (): TransportState {
    return this.#listener !== null && !this.#closed ? 'up' : 'down'
  }

  async close (): Promise<void> {
    this.#closed = true
    if (this.#listener !== null) this.#bus.emitter.off('envelope', this.#listener)
    this.#topics.clear()
  }

  #assertRunning (what: string): void {
    if (this.#closed) throw new TransportError(`MemoryTransport: ${what}() called after close()`)
    if (this.#listener === null) throw new TransportError(`MemoryTransport: ${what}() called before start()`)
  }
}

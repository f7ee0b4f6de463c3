import type { Registry } from '../cluster/registry.js'
import type { FastifyBaseLogger } from 'fastify'

/**
 * A reserved connection slot. Several events may end a connection (the
 * socket closes, the handshake aborts, the client hangs up during a hook);
 * whichever comes first releases it, and only that one.
 */
export class Slot {
  readonly ip: string
  #released = false
  readonly #registry: Registry
  readonly #log: FastifyBaseLogger

  constructor (registry: Registry, ip: string, log: FastifyBaseLogger) {
    this.#registry = registry
    this.ip = ip
    this.#log = log
  }

  release (): void {
    if (this.#released) return
    this.#released = true
    this.#registry.release(this.ip).catch((err: unknown) => {
      this.#log.error({ err, ip: this.ip }, 'ws-hub: releasing a connection slot failed')
    })
  }
}

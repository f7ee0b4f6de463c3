import type { FastifyBaseLogger } from 'fastify'
import type { SourceConfig } from '../options/source-options.js'
import { createConsumer } from './create-consumer.js'
import { SourceRunner, type SourcePublisher } from './source-runner.js'
import type { SourceConsumer, SourceContext, SourceMap, SourceStatus } from './source.js'

export interface LoadedSource {
  config: SourceConfig
  consumer: SourceConsumer
}

export interface SourcesDeps {
  log: FastifyBaseLogger
  publisher: SourcePublisher
}

/**
 * The hub's sources. Loaded when the plugin registers (so a missing client
 * package fails `register`, before anything connects), started once the
 * hub is ready, and stopped before the sockets close, each committing what
 * it delivered.
 */
export class Sources {
  readonly #runners: SourceRunner[]
  #started: Promise<void> | null = null

  constructor (loaded: readonly LoadedSource[], deps: SourcesDeps) {
    this.#runners = loaded.map(({ config, consumer }) => {
      // Each backend hands `map` the record type its schema declares it with.
      const map = config.map as SourceMap<unknown> | undefined
      return new SourceRunner({ name: config.name, type: config.type, consumer, map, publisher: deps.publisher, log: deps.log.child({ source: config.name }) })
    })
  }

  /** Builds each source's consumer; nothing connects yet. */
  static async load (configs: readonly SourceConfig[], context: Omit<SourceContext, 'name' | 'log'> & { log: FastifyBaseLogger }): Promise<LoadedSource[]> {
    const loaded: LoadedSource[] = []
    for (const config of configs) {
      const consumer = await createConsumer(config, { ...context, name: config.name, log: context.log.child({ source: config.name }) })
      loaded.push({ config, consumer })
    }
    return loaded
  }

  get size (): number {
    return this.#runners.length
  }

  /**
   * Starts every source without holding up the hub: one that cannot reach
   * its service yet keeps trying and reports `down` meanwhile.
   */
  start (): void {
    this.#started ??= Promise.all(this.#runners.map(async (runner) => { await runner.start() })).then(() => {})
  }

  /** Stops every source, after their starts settled; rejects with the first failure once all tried. */
  async close (): Promise<void> {
    const started = this.#started
    if (started === null) return
    const results = await Promise.allSettled(this.#runners.map(async (runner) => { await runner.close() }))
    await started
    const failed = results.find((result): result is PromiseRejectedResult => result.status === 'rejected')
    if (failed !== undefined) throw failed.reason
  }

  statuses (): SourceStatus[] {
    return this.#runners.map((runner) => runner.status())
  }

  /** True while a started source cannot reach its service: readiness says `degraded`. */
  anyDown (): boolean {
    return this.#started !== null && this.#runners.some((runner) => runner.state() === 'down')
  }
}

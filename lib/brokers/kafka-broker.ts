import type { FastifyBaseLogger } from 'fastify'
import type { Envelope } from '../envelope.js'
import type { Broker, BrokerState, EnvelopeHandler, PublishOptions } from './broker.js'
import type { KafkaBrokerOptions } from '../options.js'

/** Placeholder until the Kafka backend lands. */
export class KafkaBroker implements Broker {
  constructor (readonly options: KafkaBrokerOptions, readonly log: FastifyBaseLogger) {}
  async start (_instanceId: string, _handler: EnvelopeHandler): Promise<void> { throw new Error('not implemented') }
  async publish (_envelope: Envelope, _options?: PublishOptions): Promise<void> { throw new Error('not implemented') }
  state (): BrokerState { return 'down' }
  async close (): Promise<void> {}
}

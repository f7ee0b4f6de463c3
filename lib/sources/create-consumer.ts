import { loadBackend } from '../cluster/backends.js'
import type { SourceConfig } from '../options/source-options.js'
import type { SourceConsumer, SourceContext } from './source.js'

/** Builds the consumer a source's `type` names, loading its client package only now. */
export async function createConsumer (config: SourceConfig, context: SourceContext): Promise<SourceConsumer> {
  const option = `sources[${config.name}].type: ${config.type}`
  switch (config.type) {
    case 'kafka': {
      const { KafkaSource } = await loadBackend('kafkajs', option, async () => import('./kafka/kafka-source.js'))
      return new KafkaSource(config, context)
    }
    case 'mqtt': {
      const { MqttSource } = await loadBackend('mqtt', option, async () => import('./mqtt/mqtt-source.js'))
      return new MqttSource(config, context)
    }
    case 'redis-stream': {
      const { RedisStreamSource } = await loadBackend('ioredis', option, async () => import('./redis-stream/redis-stream-source.js'))
      return new RedisStreamSource(config, context)
    }
    case 'custom':
      return config.consumer
    case 'postgres-outbox': {
      const { PostgresOutboxSource } = await loadBackend('pg', option, async () => import('./postgres-outbox/postgres-outbox-source.js'))
      return new PostgresOutboxSource(config, context)
    }
  }
}

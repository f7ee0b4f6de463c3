/** How far a Kafka source's group is behind the end of its topics. */
import type { FastifyBaseLogger } from 'fastify'
import type { Admin, Kafka } from 'kafkajs'
import type { KafkaSourceConfig } from '../../options/source-options.js'
import { CLOSE_STEP_MS, settle } from '../../cluster/kafka/kafka-timeouts.js'

/**
 * Reads the group's lag: per partition, the high watermark less the
 * committed offset. The admin client is kept between reads (the runner
 * reads every few seconds) and closed with the source.
 */
export class GroupLag {
  readonly #kafka: Kafka
  readonly #config: KafkaSourceConfig
  readonly #log: FastifyBaseLogger
  #admin: Promise<Admin> | null = null
  #closed = false
  readonly #reads = new Set<Promise<number | null>>()

  constructor (kafka: Kafka, config: KafkaSourceConfig, log: FastifyBaseLogger) {
    this.#kafka = kafka
    this.#config = config
    this.#log = log
  }

  /** The records not yet committed by the group, over all its topics; null when Kafka cannot be asked. */
  async read (): Promise<number | null> {
    if (this.#closed) return null
    const reading = this.#read()
    this.#reads.add(reading)
    try {
      return await reading
    } finally {
      this.#reads.delete(reading)
    }
  }

  async #read (): Promise<number | null> {
    try {
      const admin = await this.#connected()
      const { groupId, topics, from } = this.#config
      const [committed, ...ends] = await Promise.all([
        admin.fetchOffsets({ groupId, topics }),
        ...topics.map(async (topic) => ({ topic, partitions: await admin.fetchTopicOffsets(topic) }))
      ])
      let lag = 0n
      for (const { topic, partitions } of ends) {
        const commits = committed.find((entry) => entry.topic === topic)?.partitions ?? []
        for (const { partition, high, low } of partitions) {
          const offset = BigInt(commits.find((entry) => entry.partition === partition)?.offset ?? '-1')
          // No commit yet: a new group starts at the end (latest, nothing
          // waits) or at the start of what the topic still holds (earliest).
          const start = offset >= 0n ? offset : from === 'earliest' ? BigInt(low) : BigInt(high)
          if (BigInt(high) > start) lag += BigInt(high) - start
        }
      }
      return Number(lag)
    } catch (err) {
      // Unknown lag is what null says; stats show it. Debug, not warn: the
      // outage behind it is reported once, as the source going down.
      this.#log.debug({ err, source: this.#config.name }, `ws-hub: source ${this.#config.name}: could not read the kafka lag`)
      return null
    }
  }

  async close (): Promise<void> {
    this.#closed = true
    // A request still in flight when the admin disconnects reconnects it
    // (kafkajs' retry refreshes metadata), leaving sockets open.
    await settle(Promise.allSettled(this.#reads), CLOSE_STEP_MS, 'source lag read', this.#log)
    const admin = this.#admin
    this.#admin = null
    if (admin === null) return
    // A connect that failed was reported by the read that started it.
    await settle(admin.then(async (client) => { await client.disconnect() }, () => {}), CLOSE_STEP_MS, 'source admin disconnect', this.#log)
  }

  async #connected (): Promise<Admin> {
    if (this.#admin === null) {
      const admin = this.#kafka.admin()
      const connecting = admin.connect().then(() => admin)
      this.#admin = connecting
      // A failed connect is not kept: the next read tries again.
      connecting.catch(() => { if (this.#admin === connecting) this.#admin = null })
    }
    return await this.#admin
  }
}

/** Kafka messages as the runner sees them, and bad ones as the dead-letter topic gets them. */
import type { IHeaders, KafkaMessage, Message } from 'kafkajs'
import type { KafkaSourceRecord } from '../records.js'
import type { BadRecordReason, SourceRecord } from '../source.js'

export const REASON_HEADER = 'ws-hub-reason'
export const TOPIC_HEADER = 'ws-hub-source-topic'
export const PARTITION_HEADER = 'ws-hub-source-partition'
export const OFFSET_HEADER = 'ws-hub-source-offset'

/**
 * One Kafka message as a source record. It keeps the message as read, so a
 * dead letter carries the original bytes, not their UTF-8 decoding.
 */
export class KafkaRecord implements SourceRecord<KafkaSourceRecord> {
  readonly raw: KafkaSourceRecord
  readonly coordinates: Readonly<{ topic: string, partition: number, offset: string }>
  readonly key: string
  readonly message: KafkaMessage

  constructor (topic: string, partition: number, message: KafkaMessage) {
    const { offset } = message
    this.message = message
    this.coordinates = { topic, partition, offset }
    // topic, partition and offset name a record for good: a record read
    // again after a rebalance gets the same key, so the hub drops the copy.
    this.key = `kafka:${topic}:${partition}:${offset}`
    this.raw = {
      topic,
      partition,
      offset,
      key: message.key === null ? null : message.key.toString('utf8'),
      value: message.value === null ? null : message.value.toString('utf8'),
      headers: decodeHeaders(message.headers),
      timestamp: message.timestamp
    }
  }

  text (): string | null {
    return this.raw.value
  }
}

/** Headers as text. A header sent more than once keeps its last value, as Java's `lastHeader` reads it. */
export function decodeHeaders (headers: IHeaders | undefined): Record<string, string> {
  const out: Record<string, string> = {}
  if (headers === undefined) return out
  for (const [name, value] of Object.entries(headers)) {
    const last = Array.isArray(value) ? value[value.length - 1] : value
    if (last !== undefined) out[name] = last.toString()
  }
  return out
}

/** The message a bad record becomes: its own key, value and headers, with why and where it was read. */
export function deadLetterMessage (record: KafkaRecord, reason: BadRecordReason): Message {
  const { key, value, headers } = record.message
  const { topic, partition, offset } = record.coordinates
  return {
    key,
    value,
    headers: {
      ...headers,
      [REASON_HEADER]: reason,
      [TOPIC_HEADER]: topic,
      [PARTITION_HEADER]: String(partition),
      [OFFSET_HEADER]: offset
    }
  }
}

/*
 * What each source type hands to `map`: plain data, decoded once, so a map
 * reads `record.value` without knowing the client library.
 */

export interface KafkaSourceRecord {
  topic: string
  partition: number
  /** As Kafka gives it: a decimal string (offsets outgrow a double's precision). */
  offset: string
  /** UTF-8; null when the record has none. */
  key: string | null
  value: string | null
  headers: Record<string, string>
  /** Milliseconds since the epoch, as a decimal string. */
  timestamp: string
}

export interface MqttSourceRecord {
  /** The topic the packet was published to (not the subscription's filter). */
  topic: string
  /** The payload as UTF-8 text. */
  payload: string
  /** The payload's bytes, for binary formats. */
  bytes: Buffer
  qos: 0 | 1 | 2
  retain: boolean
  /** MQTT 5 user properties. */
  userProperties: Record<string, string | string[]>
}

export interface StreamEntry {
  stream: string
  /** The entry id, `<ms>-<seq>`. */
  id: string
  fields: Record<string, string>
}

/** An outbox row with its columns as `pg` decodes them (`message` jsonb arrives parsed). */
export interface OutboxRow {
  /** bigint, as a decimal string. */
  id: string
  [column: string]: unknown
}

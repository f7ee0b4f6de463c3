import type { IPublishPacket } from 'mqtt'
import type { MqttSourceRecord } from '../records.js'
import type { SourceRecord } from '../source.js'

/** One received packet as the runner takes it; `map` gets plain data, not the MQTT.js packet. */
export function mqttRecord (packet: IPublishPacket): SourceRecord<MqttSourceRecord> {
  const bytes = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload
  const payload = bytes.toString('utf8')
  const raw: MqttSourceRecord = {
    topic: packet.topic,
    payload,
    bytes,
    qos: packet.qos,
    retain: packet.retain,
    userProperties: { ...packet.properties?.userProperties }
  }
  const coordinates: Record<string, string | number> = { topic: packet.topic }
  if (packet.messageId !== undefined) coordinates.messageId = packet.messageId
  return {
    raw,
    coordinates,
    // A packet id names a message only while it is in flight: the session
    // reuses it for the next one, so it is no identity to de-duplicate by.
    // A `map` that finds an id in the payload returns it as `idempotencyKey`.
    key: null,
    text: () => payload
  }
}

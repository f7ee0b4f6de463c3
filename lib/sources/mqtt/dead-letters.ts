import { connect, type IClientOptions, type MqttClient } from 'mqtt'
import type { MqttSourceRecord } from '../records.js'
import type { BadRecordReason } from '../source.js'
import { endClient } from './end-client.js'
import { SourceError } from '../../errors.js'

/**
 * Publishes bad packets to the dead-letter topic, on a connection of its
 * own: the reader's connection reads nothing while it holds the packet
 * being handed over (that is how it waits for the hub), so the PUBACK of a
 * dead letter sent on it would never be read.
 */
export class DeadLetters {
  readonly #topic: string
  readonly #client: MqttClient
  /**
   * Packet ids the broker acknowledged with 16, No matching subscribers.
   * MQTT.js resolves a publish without the PUBACK's reason code, so it is
   * read as the packet comes in (before the publish resolves).
   */
  readonly #unheard = new Set<number>()

  constructor (url: string, options: IClientOptions, topic: string) {
    this.#topic = topic
    // A clean session: it subscribes to nothing and keeps nothing to resend.
    this.#client = connect(url, { ...options, clean: true, properties: undefined })
    // Failures show where they matter: a dead letter that cannot be sent
    // rejects, and the runner holds the record and logs it.
    this.#client.on('error', () => {})
    this.#client.on('packetreceive', (packet) => {
      if (packet.cmd === 'puback' && packet.reasonCode === 16 && packet.messageId !== undefined) this.#unheard.add(packet.messageId)
    })
    // Ids start over on a new connection.
    this.#client.on('close', () => { this.#unheard.clear() })
  }

  /** Publishes the packet as read, at QoS 1, and resolves on the broker's PUBACK. */
  async publish (raw: MqttSourceRecord, reason: BadRecordReason): Promise<void> {
    const client = this.#client
    if (!client.connected) throw new SourceError(`the dead-letter connection is down; the packet from ${raw.topic} is held and sent again`)
    const properties = { userProperties: { ...raw.userProperties, 'ws-hub-reason': reason, 'ws-hub-source-topic': raw.topic } }
    const acked = client.publishAsync(this.#topic, raw.bytes, { qos: 1, properties })
    // MQTT.js keeps an unacknowledged QoS 1 publish for its next
    // connection; the wait stops at this one's end, so a close never waits
    // on a broker that is gone (the runner sends it again: at least once).
    let onClose = (): void => {}
    const closed = new Promise<never>((_resolve, reject) => {
      onClose = () => { reject(new SourceError('the dead-letter connection closed before the broker acknowledged the dead letter')) }
      client.once('close', onClose)
    })
    try {
      const sent = await Promise.race([acked, closed])
      // The broker dropped it, and a bad record is kept, not dropped.
      if (sent?.messageId !== undefined && this.#unheard.delete(sent.messageId)) {
        throw new SourceError(`no subscriber took the dead letter on ${this.#topic}: subscribe to it (or keep a persistent session subscribed)`)
      }
    } finally {
      client.removeListener('close', onClose)
    }
  }

  async close (): Promise<void> {
    await endClient(this.#client)
  }
}

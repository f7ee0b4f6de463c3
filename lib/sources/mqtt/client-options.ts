import type { IClientOptions } from 'mqtt'
import type { MqttSourceConfig } from '../../options/source-options.js'
import type { SourceContext } from '../source.js'

/** The client id: one per instance, or, for an `ordered` source, one for the group (see `clientId`'s option). */
export function clientIdOf (config: MqttSourceConfig, context: Pick<SourceContext, 'instanceId' | 'name'>): string {
  if (config.clientId !== undefined) return config.clientId
  return config.ordered ? `ws-hub-${config.group}-${context.name}` : `ws-hub-${config.group}-${context.instanceId}`
}

/** The connection settings, each with its reason. */
export function clientOptions (config: MqttSourceConfig, clientId: string): IClientOptions {
  const persistent = config.sessionExpirySec > 0
  return {
    // Shared subscriptions, user properties and session expiry are MQTT 5.
    protocolVersion: 5,
    clientId,
    username: config.username,
    password: config.password,
    // A persistent session keeps what was sent and not acknowledged, and
    // what arrives while disconnected, for the same client id: the broker
    // sends it again after a reconnect. A clean one starts empty each time.
    clean: !persistent,
    ...(persistent ? { properties: { sessionExpiryInterval: config.sessionExpirySec } } : {}),
    reconnectPeriod: config.reconnectMs,
    // The reader subscribes on every connect (a session the broker dropped
    // or one we unsubscribed on close has no subscriptions); MQTT.js's own
    // resubscribe would send them a second time.
    resubscribe: false
  }
}

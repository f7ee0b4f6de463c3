import { HubError } from '../../errors.js'

/** An MQTT source's failure (a refused subscription, a dead letter not acknowledged), as logged and as `sink.connected` reports it. */
export class MqttSourceError extends HubError {
  override name = 'MqttSourceError'

  constructor (message: string, options?: { cause?: unknown }) {
    super('WS_HUB_SOURCE', message, options)
  }
}

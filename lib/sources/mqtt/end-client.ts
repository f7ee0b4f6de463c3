import type { MqttClient } from 'mqtt'
import { SourceError } from '../../errors.js'

/** How long a close waits for the broker (an UNSUBACK, the DISCONNECT going out) before it drops the connection. */
export const CLOSE_TIMEOUT_MS = 2_000

/**
 * Ends a client we opened: a DISCONNECT when connected, so the broker keeps
 * the session as it should; the socket dropped at once otherwise, or when
 * the DISCONNECT cannot go out in time (MQTT.js waits for every pending ack
 * first, and a broker that stopped answering sends none).
 */
export async function endClient (client: MqttClient): Promise<void> {
  if (!client.connected) {
    await client.endAsync(true)
    return
  }
  try {
    await withTimeout(client.endAsync(false), CLOSE_TIMEOUT_MS)
  } catch {
    client.stream.destroy()
  }
}

export async function withTimeout<T> (promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => { reject(new SourceError(`no answer from the MQTT broker within ${ms} ms`)) }, ms)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

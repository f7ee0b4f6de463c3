/**
 * Business logic the hub knows nothing about, plugged in through its
 * `service` option and its decorators:
 *
 * - a custom message type: `{"type":"roll","sides":6}` is answered with
 *   `{"type":"rolled","sides":6,"value":4}` to the sender only;
 * - a price ticker publishing `{symbol, price}` to the `prices` topic once a
 *   second, which any client can `{"type":"subscribe","topic":"prices"}` to
 *   (with KAFKA_BROKERS set, the ticks come from price-feed.ts through a
 *   Kafka source instead: see config.ts);
 * - `{"type":"notify-me"}`: a notification into the sender's inbox
 *   (notifications.ts).
 */
import { randomInt } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { ErrorCodes, HubProtocolError, type ClientFrame, type HubService } from 'fastify-ws-hub'
import { notifyMe } from './notifications.js'
import { PRICES_TOPIC, TICK_INTERVAL_MS, ticksAt } from './prices.js'

export const DEFAULT_SIDES = 6
export const MAX_SIDES = 100

// The hub calls hooks as plain functions, so a service is a plain object
// whose hooks do not rely on `this`.
export const demoService: HubService = {
  async onMessage (message, context) {
    if (message.type === 'roll') {
      const sides = sidesOf(message)
      context.reply({ type: 'rolled', sides, value: randomInt(1, sides + 1) })
      return
    }
    if (message.type === 'notify-me') {
      await notifyMe(context)
      return
    }
    // Every type the hub does not know comes here; keep its answer for the
    // types this service does not know either.
    throw new HubProtocolError(ErrorCodes.unknownType, `unknown message type "${message.type}"`)
  }
}

/** A thrown HubProtocolError becomes `{"type":"error","code":"invalid_sides",...}` for the sender. */
function sidesOf (message: ClientFrame): number {
  const sides = message.sides === undefined ? DEFAULT_SIDES : message.sides
  if (typeof sides !== 'number' || !Number.isInteger(sides) || sides < 2 || sides > MAX_SIDES) {
    throw new HubProtocolError('invalid_sides', `sides must be an integer from 2 to ${MAX_SIDES}`)
  }
  return sides
}

/**
 * Starts the ticker when the app is ready and stops it when the app closes.
 * Every instance runs its own, so behind a shared broker a subscriber gets
 * each tick once per instance: fine for a demo on one machine; a scaled
 * deployment has one producer instead (price-feed.ts and a Kafka source).
 */
export function registerTicker (app: FastifyInstance, intervalMs = TICK_INTERVAL_MS): void {
  let timer: NodeJS.Timeout | undefined
  // Logged when publishing starts failing and when it recovers, not on every
  // tick: an outage would otherwise write three errors a second.
  let failing = false

  const tick = async (): Promise<void> => {
    const seconds = Math.floor(Date.now() / 1000)
    try {
      for (const message of ticksAt(seconds)) await app.wsHub.publish(PRICES_TOPIC, message)
      if (failing) app.log.info({ topic: PRICES_TOPIC }, 'demo ticker: publishing again')
      failing = false
    } catch (err) {
      if (!failing) app.log.error({ err, topic: PRICES_TOPIC }, 'demo ticker: publish failed; retrying every tick')
      failing = true
    }
  }

  app.addHook('onReady', async () => {
    // tick() catches its own errors, so the promise it returns never rejects.
    timer = setInterval(tick, intervalMs)
    // The server keeps the process alive; the ticker alone never should.
    timer.unref()
  })
  // preClose runs before the hub closes its sockets and broker, so no tick
  // is published into a hub that is shutting down.
  app.addHook('preClose', async () => {
    clearInterval(timer)
    timer = undefined
  })
}

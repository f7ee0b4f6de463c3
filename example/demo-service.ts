/**
 * Business logic the hub knows nothing about, plugged in through its
 * `service` option and its decorators:
 *
 * - a custom message type: `{"type":"roll","sides":6}` is answered with
 *   `{"type":"rolled","sides":6,"value":4}` to the sender only;
 * - a price ticker publishing `{symbol, price}` to the `prices` topic once a
 *   second, which any client can `{"type":"subscribe","topic":"prices"}` to;
 * - `{"type":"notify-me"}`: a notification into the sender's inbox
 *   (notifications.ts).
 */
import { randomInt } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { ErrorCodes, HubProtocolError, type ClientFrame, type HubService } from 'fastify-ws-hub'
import { notifyMe } from './notifications.js'

export const PRICES_TOPIC = 'prices'
export const TICK_INTERVAL_MS = 1000
export const DEFAULT_SIDES = 6
export const MAX_SIDES = 100

export interface Tick {
  symbol: string
  price: number
}

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

const SYMBOLS = [
  { symbol: 'ACME', base: 120 },
  { symbol: 'GLOBEX', base: 48 },
  { symbol: 'INITECH', base: 9.5 }
]

/**
 * The price of a symbol at a given second. It is a function of the clock,
 * not a random walk, so every instance of a scaled deployment publishes the
 * same numbers: each runs its own ticker, and a subscriber behind a shared
 * broker receives every instance's ticks. A real app would have one producer.
 */
export function priceAt (symbol: string, seconds: number): number {
  const entry = SYMBOLS.find((s) => s.symbol === symbol)
  if (entry === undefined) throw new RangeError(`unknown symbol ${symbol}`)
  const phase = entry.base
  const drift = 0.03 * Math.sin((2 * Math.PI * seconds) / 90 + phase) + 0.01 * Math.sin((2 * Math.PI * seconds) / 7 + phase)
  return Math.round(entry.base * (1 + drift) * 100) / 100
}

/** Starts the ticker when the app is ready and stops it when the app closes. */
export function registerTicker (app: FastifyInstance, intervalMs = TICK_INTERVAL_MS): void {
  let timer: NodeJS.Timeout | undefined
  // Logged when publishing starts failing and when it recovers, not on every
  // tick: an outage would otherwise write three errors a second.
  let failing = false

  const tick = async (): Promise<void> => {
    const seconds = Math.floor(Date.now() / 1000)
    try {
      for (const { symbol } of SYMBOLS) {
        const message: Tick = { symbol, price: priceAt(symbol, seconds) }
        await app.wsHub.publish(PRICES_TOPIC, message)
      }
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

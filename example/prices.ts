/**
 * The demo price feed: what a tick is and what it is worth at a given
 * second. Shared by the in-process ticker (demo-service.ts), the Kafka
 * source that reads ticks (config.ts) and their one producer
 * (price-feed.ts). No import reaches the hub, so the producer stays small.
 */

/** The hub topic clients subscribe to for ticks. */
export const PRICES_TOPIC = 'prices'
export const TICK_INTERVAL_MS = 1000

export interface Tick {
  symbol: string
  price: number
}

/** The demo's symbols and the price each one moves around. */
const SYMBOLS: ReadonlyArray<{ symbol: string, base: number }> = [
  { symbol: 'ACME', base: 120 },
  { symbol: 'GLOBEX', base: 48 },
  { symbol: 'INITECH', base: 9.5 }
]

/**
 * The price of a symbol at a given second. It is a function of the clock,
 * not a random walk, so whoever publishes agrees: the in-process ticker of
 * each instance, or price-feed.ts, the one producer of a scaled deployment.
 */
export function priceAt (symbol: string, seconds: number): number {
  const entry = SYMBOLS.find((s) => s.symbol === symbol)
  if (entry === undefined) throw new RangeError(`unknown symbol ${symbol}`)
  const phase = entry.base
  const drift = 0.03 * Math.sin((2 * Math.PI * seconds) / 90 + phase) + 0.01 * Math.sin((2 * Math.PI * seconds) / 7 + phase)
  return Math.round(entry.base * (1 + drift) * 100) / 100
}

/** One tick per symbol at a given second. */
export function ticksAt (seconds: number): Tick[] {
  return SYMBOLS.map(({ symbol }) => ({ symbol, price: priceAt(symbol, seconds) }))
}

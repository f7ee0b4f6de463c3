import { performance } from 'node:perf_hooks'
import { createInterface } from 'node:readline'
import Fastify from 'fastify'
import wsHub, { type WsHubOptions } from 'fastify-ws-hub'

/*
 * One hub instance for bench/stream-latency.ts, in its own process. Options
 * come as JSON in argv; a line `stream <rate> <ms>` on stdin makes it
 * broadcast `rate` messages per second for `ms` milliseconds, each carrying
 * its send time, and answer `done <sent> <conflated drops>` on stdout;
 * `stream <rate> <ms> <conflateMs>` publishes to topic `ticker` conflated.
 */
const options = JSON.parse(process.argv[2] ?? '{}') as WsHubOptions
const app = Fastify({ logger: false })
await app.register(wsHub, { heartbeatIntervalMs: 0, handshakeRateLimit: false, rest: false, metrics: false, ...options })
await app.listen({ port: 0, host: '127.0.0.1' })
const address = app.server.address()
if (address === null || typeof address === 'string') throw new Error('no port')
process.stdout.write(`ready ${address.port}\n`)

// Wall-clock milliseconds with sub-millisecond precision, comparable across
// processes on one machine.
const now = (): number => performance.timeOrigin + performance.now()

/** conflateMs > 0: publish to topic `ticker` conflated under one key, as a price feed would. */
async function stream (rate: number, durationMs: number, conflateMs: number): Promise<number> {
  const started = performance.now()
  let sent = 0
  for (;;) {
    const elapsed = performance.now() - started
    if (elapsed >= durationMs) return sent
    // Send what the schedule owes by now, then yield to the event loop.
    const due = Math.floor((elapsed / 1000) * rate)
    while (sent < due) {
      const message = { n: sent, t: now() }
      const delivery = conflateMs > 0
        ? app.wsHub.publish('ticker', message, { conflate: 'ACME', throttleMs: conflateMs })
        : app.wsHub.broadcast(message)
      delivery.catch(() => {})
      sent++
    }
    await new Promise((resolve) => setImmediate(resolve))
  }
}

for await (const line of createInterface({ input: process.stdin })) {
  const [command, rate, ms, conflateMs] = line.split(' ')
  if (command === 'stream') {
    const sent = await stream(Number(rate), Number(ms), Number(conflateMs ?? 0))
    process.stdout.write(`done ${sent} ${app.wsHub.stats().conflatedDrops}\n`)
  } else if (command === 'quit') {
    break
  }
}
await app.close()

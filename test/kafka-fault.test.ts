/**
 * Kafka going away and coming back, mid-traffic. This file starts its own
 * single-node Kafka (scripts/kafka.sh on free ports and a temporary data
 * directory) and stops and restarts that one, so the Kafka at
 * KAFKA_BROKERS, which other test files share, is never touched and this
 * file may run in parallel with them.
 *
 * Gated like the other Kafka tests: skipped without KAFKA_BROKERS, except in
 * CI where that is a failure. Needs java, as scripts/kafka.sh does.
 */
import t from 'tap'
import Fastify, { type FastifyBaseLogger } from 'fastify'
import { KafkaTransport } from '../lib/cluster/kafka/kafka-transport.js'
import type { Envelope } from '../lib/cluster/envelope.js'
import { PrivateKafka } from './helpers/kafka-server.js'

interface LogLine { level: number, msg: string, [key: string]: unknown }

function captureLog (): { log: FastifyBaseLogger, lines: LogLine[] } {
  const lines: LogLine[] = []
  const app = Fastify({ logger: { level: 'info', stream: { write: (line: string) => { lines.push(JSON.parse(line) as LogLine) } } } })
  return { log: app.log, lines }
}

const frame = (n: number): string => JSON.stringify({ type: 'message', n })
const numbers = (envelopes: Envelope[]): number[] => envelopes.map((e) => e.type === 'deliver' ? (JSON.parse(e.frame) as { n: number }).n : -1)

// Not from ./helpers.js: that loads the whole hub, and this file needs only the transport.
async function until (condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}
const PUBLISH_TIMEOUT_MS = 2_000

if ((process.env.KAFKA_BROKERS ?? '').trim() === '') {
  if (process.env.CI === 'true') t.fail('KAFKA_BROKERS is not set: CI must run the Kafka tests (bash scripts/kafka.sh start prints it)')
  else t.test('kafka fault tests', { skip: 'KAFKA_BROKERS is not set; run `bash scripts/kafka.sh start` and export the KAFKA_BROKERS it prints' }, async () => {})
} else {
  t.test('Kafka stopped mid-traffic: state goes down, publishes fail in bounded time, and everything recovers on its own without duplicates', async (t) => {
    const began = Date.now()
    const elapsed = (): string => `${((Date.now() - began) / 1000).toFixed(1)} s`
    const kafka = await PrivateKafka.start(t)
    const port = kafka.port
    t.comment(`${elapsed()}: private Kafka started on port ${port}`)

    const options = { type: 'kafka' as const, brokers: [`127.0.0.1:${port}`], topic: 'ws-hub-fault', publishTimeoutMs: PUBLISH_TIMEOUT_MS }
    const logA = captureLog()
    const logB = captureLog()
    const a = new KafkaTransport(options, logA.log)
    const b = new KafkaTransport(options, logB.log)
    t.teardown(() => Promise.all([a.close(), b.close()]))
    const atA: Envelope[] = []
    const atB: Envelope[] = []
    // A publish that may have been sent rejects once receivers would drop
    // it as stale; with the bound at the publish timeout, that is the timeout.
    await a.start('a', (e) => atA.push(e), { maxEnvelopeAgeMs: PUBLISH_TIMEOUT_MS })
    await b.start('b', (e) => atB.push(e), { maxEnvelopeAgeMs: PUBLISH_TIMEOUT_MS })

    // Traffic a → b, one publish every 20 ms, each outcome recorded.
    const acknowledged: number[] = []
    const failures: Array<{ n: number, ms: number }> = []
    const inFlight = new Set<Promise<void>>()
    let n = 0
    const publishOne = (): void => {
      const k = n++
      const began = Date.now()
      const done = a.publish({ type: 'deliver', origin: 'a', target: { kind: 'all' }, frame: frame(k) }).then(
        () => { acknowledged.push(k) },
        () => { failures.push({ n: k, ms: Date.now() - began }) }
      )
      inFlight.add(done)
      done.finally(() => inFlight.delete(done)).catch(() => {})
    }
    const traffic = setInterval(publishOne, 20)
    t.teardown(() => clearInterval(traffic))
    await until(() => atB.length >= 20, 10_000, 'traffic to flow')

    t.comment(`${elapsed()}: traffic flowing, stopping Kafka`)
    await kafka.pause()
    t.comment(`${elapsed()}: Kafka stopped`)
    const stoppedAt = Date.now()
    await until(() => a.state() === 'down' && b.state() === 'down', 15_000, 'both transports to report down')
    t.pass(`down ${Date.now() - stoppedAt} ms after Kafka stopped`)
    await until(() => failures.length >= 5, 15_000, 'publishes to fail while Kafka is down')
    clearInterval(traffic)
    // Every publish settles in bounded time, none hangs until Kafka returns.
    await until(() => inFlight.size === 0, PUBLISH_TIMEOUT_MS + 3_000, 'every publish to settle')
    t.ok(failures.every((f) => f.ms <= PUBLISH_TIMEOUT_MS + 1_000), `failed within the publish timeout: slowest ${Math.max(...failures.map((f) => f.ms))} ms`)
    t.equal(a.counters.publishFailures + a.counters.publishOverflows, failures.length, 'every failure is counted')

    t.comment(`${elapsed()}: restarting Kafka`)
    await kafka.resume()
    t.comment(`${elapsed()}: Kafka restarted`)
    const restartedAt = Date.now()
    // Nothing published meanwhile: recovery must not need traffic.
    await until(() => a.state() === 'up' && b.state() === 'up', 45_000, 'both transports to report up again')
    t.pass(`up ${Date.now() - restartedAt} ms after Kafka restarted`)

    const before = n
    for (let k = 0; k < 20; k++) {
      await a.publish({ type: 'deliver', origin: 'a', target: { kind: 'all' }, frame: frame(before + k) })
      await b.publish({ type: 'deliver', origin: 'b', target: { kind: 'all' }, frame: frame(before + k) })
    }
    await until(() => numbers(atB).filter((k) => k >= before).length === 20, 15_000, 'a → b after recovery')
    await until(() => numbers(atA).length === 20, 15_000, 'b → a after recovery')
    t.same(numbers(atA), [...Array(20).keys()].map((k) => before + k), 'b → a in order')

    const atBNumbers = numbers(atB)
    t.equal(new Set(atBNumbers).size, atBNumbers.length, 'no envelope delivered twice')
    t.same(atBNumbers, [...atBNumbers].sort((x, y) => x - y), 'in publish order')
    const missing = acknowledged.filter((k) => !atBNumbers.includes(k))
    t.same(missing, [], 'every acknowledged publish was delivered (the log survived, b resumed where it was)')

    // One log line per change, alternating, ending up.
    for (const [name, { lines }] of [['a', logA], ['b', logB]] as const) {
      const changes = lines.filter((l) => l.msg.startsWith('ws-hub: kafka transport down') || l.msg === 'ws-hub: kafka transport up').map((l) => l.msg === 'ws-hub: kafka transport up' ? 'up' : 'down')
      t.ok(changes.length >= 3, `${name}: ${changes.join(' → ')}`)
      t.ok(changes.every((c, i) => i === 0 || c !== changes[i - 1]), `${name}: never logged the same state twice in a row`)
      t.equal(changes.at(-1), 'up')
      t.ok(lines.filter((l) => l.msg.startsWith('ws-hub: kafka transport down')).every((l) => l.level === 40), `${name}: down is a warning`)
    }
    await Promise.all([a.close(), b.close()])
    t.comment(`${elapsed()}: done`)
  })
}

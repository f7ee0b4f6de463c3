import { field } from './control.js'

/*
 * EXTENSION POINT: cross-instance broadcast latency (Redis / Kafka).
 *
 * A scenario starts two hub servers, A and B, with the same `broker` (and
 * optional `registry`) option. The driver connects every client to B but
 * triggers broadcasts on A's control port, so each measured broadcast goes
 * A -> broker -> B -> clients; only the latency phase runs. run.ts does the
 * plumbing (`runCrossInstance`): server.ts passes `hubBroker`/`hubRegistry`
 * to the hub unchanged, and the driver takes separate control ports for the
 * trigger (A) and for counting clients (B).
 *
 * With REDIS_URL and/or KAFKA_BROKERS set, a Redis and/or Kafka scenario
 * runs; more can be passed at run time as JSON, e.g.
 *
 *   BENCH_CROSS_INSTANCE='[{"name":"redis","broker":{"type":"redis","url":"redis://127.0.0.1:6379"}}]' npm run bench
 *
 * Results land in the `crossInstance` array of the JSON and in a second table.
 */
export interface CrossInstanceScenario {
  name: string
  /** The hub `broker` option both instances get (a BrokerOption). */
  broker: unknown
  /** The hub `registry` option both instances get; memory when absent. */
  registry?: unknown
}

/** Redis and Kafka scenarios for the brokers the environment names (REDIS_URL, KAFKA_BROKERS). */
export function defaultScenarios (environment: NodeJS.ProcessEnv): CrossInstanceScenario[] {
  const scenarios: CrossInstanceScenario[] = []
  const redis = environment.REDIS_URL
  if (redis !== undefined && redis !== '') {
    const prefix = `ws-hub-bench:${process.pid}:`
    scenarios.push({ name: 'redis', broker: { type: 'redis', url: redis, channelPrefix: prefix } })
  }
  const kafka = environment.KAFKA_BROKERS
  if (kafka !== undefined && kafka !== '') {
    scenarios.push({ name: 'kafka', broker: { type: 'kafka', brokers: kafka.split(','), topic: `ws-hub-bench-${process.pid}` } })
  }
  return scenarios
}

/** The scenarios for the brokers in the environment, plus those in BENCH_CROSS_INSTANCE. */
export function crossInstanceScenarios (env: string | undefined): CrossInstanceScenario[] {
  const CROSS_INSTANCE_SCENARIOS = defaultScenarios(process.env)
  if (env === undefined || env.trim() === '') return CROSS_INSTANCE_SCENARIOS
  const parsed: unknown = JSON.parse(env)
  if (!Array.isArray(parsed)) throw new Error('BENCH_CROSS_INSTANCE must be a JSON array of { name, broker, registry? }')
  const extra = parsed.map((entry: unknown): CrossInstanceScenario => {
    const name = field(entry, 'name')
    const broker = field(entry, 'broker')
    if (typeof name !== 'string' || broker === undefined) throw new Error('BENCH_CROSS_INSTANCE: every entry needs a name and a broker')
    return { name, broker, registry: field(entry, 'registry') }
  })
  return [...CROSS_INSTANCE_SCENARIOS, ...extra]
}

/**
 * The contract every event-source backend passes against its real service:
 * it consumes and maps in order, acknowledges only what the hub took,
 * pauses and resumes without loss, skips a bad record and goes on, commits
 * what was delivered on close, and hands a group's records over when one
 * consumer leaves. The hub is a fake publisher here; the backend is real.
 */
import type { FastifyBaseLogger } from 'fastify'
import { SourceRunner, type SourcePublisher } from '../sources/source-runner.js'
import type { SourceConsumer, SourceStatus, SourceTarget } from '../sources/source.js'
import type { TapLike } from './tap-like.js'

export interface SourceFixture {
  /** A new, empty place to read (a Kafka topic, a stream, a table, an MQTT filter's prefix). */
  place: () => Promise<string>
  /**
   * A new place for the group test whose records the group's members share
   * out (a Kafka topic with a partition per member), where order holds only
   * within each member's share. Left out: `place`, read in order.
   */
  groupPlace?: () => Promise<string>
  /**
   * A consumer of `place` in the consumer group `group`, as hub instance
   * `instanceId` (the same id again is the same instance coming back).
   */
  consumer: (place: string, options: { instanceId: string, group: string }) => Promise<SourceConsumer> | SourceConsumer
  /** Produces these payload texts into `place`, in this order. */
  produce: (place: string, texts: readonly string[]) => Promise<void>
  /** Whether each record carries an idempotency key of its own. Default true. */
  keyed?: boolean
  /** How long a record may take from produce to publish (a Kafka group join is slow). Default 20 s. */
  timeoutMs?: number
  /** How long a group takes to settle once its members read (a Kafka rebalance). Default 200 ms. */
  settleMs?: number
}

interface Published {
  n: number
  key: string | undefined
}

/** The hub, faked: can refuse (not accepting) or fail a number of publishes. */
export class FakePublisher implements SourcePublisher {
  readonly published: Published[] = []
  down = false
  failures = 0
  #waiters: Array<() => void> = []

  accepting (): boolean {
    return !this.down
  }

  problem (target: SourceTarget): 'unknown_topic' | null {
    return 'topic' in target && target.topic.startsWith('unknown') ? 'unknown_topic' : null
  }

  async publish (target: SourceTarget, key: string | undefined): Promise<void> {
    await Promise.resolve()
    if (this.failures > 0) {
      this.failures--
      throw new Error('fake transport failure')
    }
    this.published.push({ n: (target.message as { n: number }).n, key })
    for (const wake of this.#waiters.splice(0)) wake()
  }

  async waitFor (count: number, timeoutMs: number): Promise<Published[]> {
    const deadline = Date.now() + timeoutMs
    while (this.published.length < count) {
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`expected ${count} publications within ${timeoutMs} ms, got ${this.published.length}`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 100))
        this.#waiters.push(() => { clearTimeout(timer); resolve() })
      })
    }
    return this.published
  }

  /** The distinct `n`s, in order of their first publication. */
  firsts (): number[] {
    return [...new Set(this.published.map((p) => p.n))]
  }
}

/** A logger that drops everything, for runners and consumers under test. */
export const quietLogger: FastifyBaseLogger = {
  level: 'silent',
  fatal () {},
  error () {},
  warn () {},
  info () {},
  debug () {},
  trace () {},
  silent () {},
  child () { return quietLogger }
}

let counter = 0
export const uniqueName = (prefix: string): string => `${prefix}-${process.pid}-${Date.now().toString(36)}-${++counter}`

const record = (n: number, topic = 'room'): string => JSON.stringify({ topic, message: { n } })
const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i)
const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

export async function sourceSuite (t: TapLike, name: string, fixture: SourceFixture): Promise<void> {
  const timeoutMs = fixture.timeoutMs ?? 20_000
  const keyed = fixture.keyed ?? true

  async function run (place: string, publisher: FakePublisher, instanceId = uniqueName('instance'), group = `group-${place}`): Promise<SourceRunner> {
    const consumer = await fixture.consumer(place, { instanceId, group })
    const runner = new SourceRunner({ name, type: name, consumer, publisher, log: quietLogger, retryMs: 50, maxRetryMs: 200, lagIntervalMs: 200 })
    await runner.start()
    return runner
  }

  /** Waits until the runner's counters say `done` (or the timeout passed: the assertions after tell what is missing). */
  async function counted (runner: SourceRunner, done: (status: SourceStatus) => boolean): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!done(runner.status()) && Date.now() < deadline) await sleep(10)
  }

  /** Produces `probe` records until one is published: the consumer is reading (a Kafka group join takes seconds). */
  async function reading (place: string, publisher: FakePublisher, probe: number): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!publisher.published.some((p) => p.n === probe)) {
      if (Date.now() > deadline) throw new Error(`${name}: the consumer did not start reading within ${timeoutMs} ms`)
      await fixture.produce(place, [record(probe)])
      await Promise.race([publisher.waitFor(publisher.published.length + 1, 1_000).catch(() => {}), sleep(1_000)])
    }
    publisher.published.length = 0
  }

  await t.test(`${name}: consumes, maps and publishes in order, each record with its own key`, async (t) => {
    const place = await fixture.place()
    const publisher = new FakePublisher()
    const runner = await run(place, publisher)
    t.teardown(async () => { await runner.close() })
    await reading(place, publisher, -1)
    await fixture.produce(place, range(0, 20).map((n) => record(n)))
    const got = await publisher.waitFor(20, timeoutMs)
    t.same(got.map((p) => p.n), range(0, 20), 'in the order produced')
    if (keyed) {
      t.ok(got.every((p) => typeof p.key === 'string' && p.key.length > 0), 'every publication has a key')
      t.equal(new Set(got.map((p) => p.key)).size, 20, 'keys are distinct')
    }
    // The runner counts a delivery once all of its publishes settled, a moment after the last one landed.
    await counted(runner, (status) => status.published >= 20)
    const status = runner.status()
    t.equal(status.state, 'up')
    t.equal(status.published >= 20, true, 'published counted')
  })

  await t.test(`${name}: acknowledges only what the hub took: records refused before a close are read again`, async (t) => {
    const place = await fixture.place()
    const first = new FakePublisher()
    const instanceId = uniqueName('instance')
    const runner = await run(place, first, instanceId)
    await reading(place, first, -1)
    first.down = true
    await fixture.produce(place, range(0, 5).map((n) => record(n)))
    await sleep(500)
    t.equal(first.published.length, 0, 'nothing published while the hub refuses')
    t.equal(runner.status().state, 'paused', 'the source says it is paused')
    await runner.close()
    const second = new FakePublisher()
    const again = await run(place, second, instanceId)
    t.teardown(async () => { await again.close() })
    await second.waitFor(5, timeoutMs)
    t.same(second.firsts().slice(0, 5), range(0, 5), 'every refused record came back, in order')
  })

  await t.test(`${name}: pauses while the hub is down or failing and resumes by itself, losing nothing`, async (t) => {
    const place = await fixture.place()
    const publisher = new FakePublisher()
    const runner = await run(place, publisher)
    t.teardown(async () => { await runner.close() })
    await reading(place, publisher, -1)
    publisher.down = true
    await fixture.produce(place, range(0, 10).map((n) => record(n)))
    await sleep(400)
    t.equal(publisher.published.length, 0, 'nothing read and dropped while down')
    t.equal(runner.status().state, 'paused')
    publisher.failures = 3
    publisher.down = false
    await fixture.produce(place, range(10, 20).map((n) => record(n)))
    const deadline = Date.now() + timeoutMs
    while (publisher.firsts().length < 20 && Date.now() < deadline) await sleep(50)
    t.same(publisher.firsts(), range(0, 20), 'all records, first publications in order')
    t.equal(runner.status().state, 'up', 'up again')
  })

  await t.test(`${name}: a bad record is skipped and counted, the records after it flow`, async (t) => {
    const place = await fixture.place()
    const publisher = new FakePublisher()
    const runner = await run(place, publisher)
    t.teardown(async () => { await runner.close() })
    await reading(place, publisher, -1)
    await fixture.produce(place, [record(0), '{not json', record(1), JSON.stringify({ topic: 'room' }), record(2, 'unknown:x'), record(3)])
    const got = await publisher.waitFor(2, timeoutMs)
    const deadline = Date.now() + timeoutMs
    while (publisher.published.length < 3 && Date.now() < deadline) await sleep(50)
    t.same(got.map((p) => p.n), [0, 1, 3], 'good records published, bad ones not')
    await counted(runner, (status) => status.recordsIn >= 6)
    const skipped = runner.status().skipped
    t.equal(skipped.invalid_json, 1)
    t.equal(skipped.invalid_target, 1)
    t.equal(skipped.unknown_topic, 1)
  })

  await t.test(`${name}: close commits what was delivered: the group does not read it again`, async (t) => {
    const place = await fixture.place()
    const instanceId = uniqueName('instance')
    const first = new FakePublisher()
    const runner = await run(place, first, instanceId)
    await reading(place, first, -1)
    await fixture.produce(place, range(0, 10).map((n) => record(n)))
    await first.waitFor(10, timeoutMs)
    await runner.close()
    const second = new FakePublisher()
    const again = await run(place, second, instanceId)
    t.teardown(async () => { await again.close() })
    await reading(place, second, 100)
    await fixture.produce(place, [record(101)])
    await second.waitFor(1, timeoutMs)
    t.same(second.published.map((p) => p.n), [101], 'only what came after')
  })

  await t.test(`${name}: two consumers in a group read each record once; when one leaves the other reads on`, async (t) => {
    const shared = fixture.groupPlace !== undefined
    const place = await (fixture.groupPlace ?? fixture.place)()
    const group = `group-${place}`
    const a = new FakePublisher()
    const b = new FakePublisher()
    const runnerA = await run(place, a, uniqueName('a'), group)
    const runnerB = await run(place, b, uniqueName('b'), group)
    t.teardown(async () => { await runnerB.close() })
    // The group has settled (both joined) before the count starts.
    const probeDeadline = Date.now() + timeoutMs
    while (![...a.published, ...b.published].some((p) => p.n === -2)) {
      if (Date.now() > probeDeadline) throw new Error(`${name}: the group did not start reading within ${timeoutMs} ms`)
      await fixture.produce(place, [record(-2)])
      await sleep(500)
    }
    await sleep(fixture.settleMs ?? 200)
    a.published.length = 0
    b.published.length = 0
    await fixture.produce(place, range(0, 40).map((n) => record(n)))
    const deadline = Date.now() + timeoutMs
    while (a.published.length + b.published.length < 40 && Date.now() < deadline) await sleep(50)
    const all = [...a.published, ...b.published].map((p) => p.n).filter((n) => n >= 0).sort((x, y) => x - y)
    t.same(all, range(0, 40), 'each record once across the group')
    if (shared) t.ok(a.published.length > 0 && b.published.length > 0, 'each member read a share')
    await runnerA.close()
    b.published.length = 0
    await fixture.produce(place, range(40, 60).map((n) => record(n)))
    await b.waitFor(20, timeoutMs)
    const after = b.firsts().filter((n) => n >= 40)
    // Shares keep their own order only: the one left reads them one after another.
    t.same(shared ? after.sort((x, y) => x - y) : after, range(40, 60), 'the one left reads everything after')
  })
}

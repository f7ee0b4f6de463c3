import t from 'tap'
import { SourceRunner } from '../lib/sources/source-runner.js'
import { FakePublisher } from '../lib/testing/source-suite.js'
import type { SourceConsumer, SourceRecord, SourceTarget } from '../lib/sources/source.js'
import { keyOf } from '../lib/sources/targets.js'
import { recordingLogger } from './helpers/redis-server.js'

const idle: SourceConsumer = { start: async () => {}, lag: async () => null, close: async () => {} }

function recordOf (offset: number, value: unknown): SourceRecord {
  const text = JSON.stringify(value)
  return { raw: text, coordinates: { offset }, key: `q:${offset}`, text: () => text }
}

/** Fails the publications of the listed `n`s, once each. */
class Flaky extends FakePublisher {
  readonly failOnce: Set<number>
  constructor (fail: number[]) { super(); this.failOnce = new Set(fail) }
  override async publish (target: SourceTarget, key: string | undefined): Promise<void> {
    const n = (target.message as { n: number }).n
    if (this.failOnce.delete(n)) {
      await Promise.resolve()
      throw new Error('lost on the way')
    }
    await super.publish(target, key)
  }
}

function runner (publisher: FakePublisher): SourceRunner {
  return new SourceRunner({ name: 'q', type: 'custom', consumer: idle, publisher, log: recordingLogger().log, retryMs: 1, maxRetryMs: 1 })
}

t.test('a failed publication stops its topic\'s line: nothing later to that topic goes out before it', async (t) => {
  const publisher = new Flaky([1])
  const source = runner(publisher)
  const records = [0, 1, 2, 3].map((n) => recordOf(n, { topic: 'a', message: { n } }))
  const taken = await source.deliver(records)
  t.equal(taken, 1, 'only the record before the failure may be acknowledged')
  t.same(publisher.published.map((p) => p.n), [0], '2 and 3 waited behind 1')
  await source.resumed()
  t.equal(await source.deliver(records.slice(1)), 3)
  t.same(publisher.published.map((p) => p.n), [0, 1, 2, 3], 'in order')
})

t.test('other topics do not wait for a failed one, and the prefix rule still holds', async (t) => {
  const publisher = new Flaky([1])
  const source = runner(publisher)
  const records = [
    recordOf(0, { topic: 'a', message: { n: 0 } }),
    recordOf(1, { topic: 'a', message: { n: 1 } }),
    recordOf(2, { topic: 'b', message: { n: 2 } })
  ]
  t.equal(await source.deliver(records), 1)
  t.same(publisher.published.map((p) => p.n).sort(), [0, 2], 'b went out; it is read again (a duplicate only a history topic drops)')
  t.equal(source.state(), 'down', 'never connected: down wins over paused')
})

t.test('deliver refuses while the hub does not accept, and resumed() waits for it', async (t) => {
  const publisher = new FakePublisher()
  publisher.down = true
  const source = runner(publisher)
  source.connected(true)
  t.equal(await source.deliver([recordOf(0, { topic: 'a', message: { n: 0 } })]), 0)
  t.equal(source.state(), 'paused')
  let resumed = false
  const waiting = source.resumed().then(() => { resumed = true })
  await new Promise((resolve) => setTimeout(resolve, 120))
  t.notOk(resumed, 'still waiting while down')
  publisher.down = false
  await waiting
  t.equal(await source.deliver([recordOf(0, { topic: 'a', message: { n: 0 } })]), 1)
  t.equal(source.state(), 'up')
})

t.test('keys: a record\'s own, one per target, the map\'s first, long ones digested', async (t) => {
  const record = recordOf(7, {})
  t.equal(keyOf(record, { topic: 'a', message: 1 }, 0, 1), 'q:7')
  t.equal(keyOf(record, { topic: 'a', message: 1 }, 1, 2), 'q:7#1')
  t.equal(keyOf(record, { topic: 'a', message: 1, idempotencyKey: 'mine' }, 0, 1), 'mine')
  t.equal(keyOf(record, { userId: 'u', message: 1 }, 0, 1), undefined, 'only topics are de-duplicated')
  t.equal(keyOf({ ...record, key: null }, { topic: 'a', message: 1 }, 0, 1), undefined)
  const long = keyOf({ ...record, key: 'k'.repeat(300) }, { topic: 'a', message: 1 }, 0, 1)
  t.match(long, /^sha256:[A-Za-z0-9_-]{43}$/)
})

t.test('map results: null filters, a SyntaxError is invalid_json, a throw is map_failed, bad shapes are invalid_target', async (t) => {
  const publisher = new FakePublisher()
  const maps: Array<[unknown, string]> = [
    [() => null, 'filtered'],
    [() => { JSON.parse('{') }, 'invalid_json'],
    [() => { throw new Error('nope') }, 'map_failed'],
    [() => ({ message: 1 }), 'invalid_target'],
    [() => ({ topic: 'a', userId: 'b', message: 1 }), 'invalid_target'],
    [() => ({ broadcast: 'yes', message: 1 }), 'invalid_target'],
    [() => ({ userId: 'u', message: 1, idempotencyKey: 'k' }), 'invalid_target'],
    [() => [{ topic: 'a', message: { n: 1 } }, { topic: 'unknown:x', message: { n: 2 } }], 'unknown_topic']
  ]
  for (const [map, outcome] of maps) {
    const source = new SourceRunner({ name: 'q', type: 'custom', consumer: idle, publisher, log: recordingLogger().log, map: map as never })
    t.equal(await source.deliver([recordOf(0, {})]), 1, `${outcome}: taken`)
    const status = source.status()
    if (outcome === 'filtered') t.equal(status.filtered, 1)
    else t.equal(status.skipped[outcome as keyof typeof status.skipped], 1, outcome)
  }
  t.same(publisher.published, [], 'a record with one bad target publishes none of them')
})

/**
 * The contract every Broker backend must pass. A backend's test file calls
 * `brokerSuite` with a factory; nothing here knows which backend it runs.
 */
import type { Broker } from '../cluster/transport.js'
import type { Envelope } from '../cluster/envelope.js'
import type { Test } from 'tap'

export type TapLike = Test

export interface BrokerFactory {
  /** A new broker on the shared backend (same bus, server or cluster). */
  create: () => Promise<Broker> | Broker
  /** How long a delivery may take before the test calls it lost. */
  deliveryTimeoutMs?: number
}

let counter = 0
function uniqueId (prefix: string): string {
  counter++
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${counter}`
}

class Inbox {
  readonly received: Envelope[] = []
  #waiters: Array<() => void> = []

  readonly handler = (envelope: Envelope): void => {
    this.received.push(envelope)
    for (const wake of this.#waiters.splice(0)) wake()
  }

  async waitFor (count: number, timeoutMs: number): Promise<Envelope[]> {
    const deadline = Date.now() + timeoutMs
    while (this.received.length < count) {
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`expected ${count} envelopes within ${timeoutMs} ms, got ${this.received.length}`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.#waiters.push(() => { clearTimeout(timer); resolve() })
      })
    }
    return this.received
  }
}

const frame = (n: number): string => JSON.stringify({ type: 'message', n, text: 'héllo\nwörld ✓' })

export function brokerSuite (t: TapLike, name: string, factory: BrokerFactory): void {
  const timeout = factory.deliveryTimeoutMs ?? 5000

  async function started (t: TapLike, instanceId: string): Promise<{ broker: Broker, inbox: Inbox }> {
    const broker = await factory.create()
    const inbox = new Inbox()
    t.teardown(() => broker.close())
    await broker.start(instanceId, inbox.handler)
    return { broker, inbox }
  }

  t.test(`${name}: start resolves once subscribed, so the next publish arrives`, async (t) => {
    const a = await started(t, uniqueId('a'))
    const b = await started(t, uniqueId('b'))
    t.equal(b.broker.state(), 'up')
    await a.broker.publish({ origin: 'a-origin', target: { kind: 'all' }, frame: frame(1) })
    const [got] = await b.inbox.waitFor(1, timeout)
    t.equal(got?.frame, frame(1), 'frame text arrives byte for byte')
    t.same(got?.target, { kind: 'all' })
  })

  // The race a backend must not lose: subscribed but not yet positioned, so
  // the first publish after start() slips past a fresh instance.
  t.test(`${name}: a fresh instance receives a publish made the moment start() resolves, every time`, async (t) => {
    const idA = uniqueId('a')
    const a = await started(t, idA)
    for (let round = 0; round < 10; round++) {
      const fresh = await started(t, uniqueId(`fresh${round}`))
      await a.broker.publish({ origin: idA, target: { kind: 'all' }, frame: frame(round) })
      const [got] = await fresh.inbox.waitFor(1, timeout)
      t.equal(got?.frame, frame(round), `round ${round}`)
      await fresh.broker.close()
    }
  })

  t.test(`${name}: an instance never receives its own envelopes`, async (t) => {
    const idA = uniqueId('a')
    const a = await started(t, idA)
    const b = await started(t, uniqueId('b'))
    await a.broker.publish({ origin: idA, target: { kind: 'all' }, frame: frame(1) })
    await a.broker.publish({ origin: idA, target: { kind: 'all' }, frame: frame(2) })
    await b.inbox.waitFor(2, timeout)
    // b saw both, so a's own copies (if any were coming) had time to arrive too.
    t.equal(a.inbox.received.length, 0)
  })

  t.test(`${name}: fans out to every other instance, in publish order`, async (t) => {
    const idA = uniqueId('a')
    const a = await started(t, idA)
    const b = await started(t, uniqueId('b'))
    const c = await started(t, uniqueId('c'))
    for (let n = 0; n < 20; n++) {
      await a.broker.publish({ origin: idA, target: { kind: 'topic', topic: 'prices' }, frame: frame(n) })
    }
    for (const inbox of [b.inbox, c.inbox]) {
      const got = await inbox.waitFor(20, timeout)
      t.same(got.map((e) => JSON.parse(e.frame).n), [...Array(20).keys()])
      t.same(got[0]?.target, { kind: 'topic', topic: 'prices' })
      t.equal(got[0]?.origin, idA)
    }
  })

  t.test(`${name}: publish with instances reaches only those instances`, async (t) => {
    const idA = uniqueId('a')
    const idB = uniqueId('b')
    const a = await started(t, idA)
    const b = await started(t, idB)
    const c = await started(t, uniqueId('c'))
    await a.broker.publish({ origin: idA, target: { kind: 'client', id: 'x' }, frame: frame(1) }, { instances: [idB] })
    // A broadcast after it: once c has the broadcast, c would have had the direct one too.
    await a.broker.publish({ origin: idA, target: { kind: 'all' }, frame: frame(2) })
    await b.inbox.waitFor(2, timeout)
    await c.inbox.waitFor(1, timeout)
    t.same(c.inbox.received.map((e) => JSON.parse(e.frame).n), [2])
    t.same(b.inbox.received[0]?.target, { kind: 'client', id: 'x' })
  })

  t.test(`${name}: close is idempotent and stops delivery`, async (t) => {
    const idA = uniqueId('a')
    const a = await started(t, idA)
    const b = await started(t, uniqueId('b'))
    const c = await started(t, uniqueId('c'))
    await b.broker.close()
    await b.broker.close()
    await a.broker.publish({ origin: idA, target: { kind: 'all' }, frame: frame(1) })
    await c.inbox.waitFor(1, timeout)
    t.equal(b.inbox.received.length, 0)
  })
}

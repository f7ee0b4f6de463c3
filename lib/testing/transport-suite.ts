/**
 * The contract every Transport backend must pass. A backend's test file calls
 * `transportSuite` with a factory; nothing here knows which backend it runs.
 *
 * "Nothing else arrived" is proven with a sentinel, never a sleep: the same
 * origin publishes something the instance does receive after what it must
 * not; every backend keeps one origin's order to one instance, so once the
 * sentinel is in, nothing published before it can still be on its way.
 */
import { HubErrorCodes } from '../errors.js'
import type { DeliverEnvelope, Envelope, Target } from '../cluster/envelope.js'
import type { Transport } from '../cluster/transport.js'
import type { TapLike } from './tap-like.js'

export type { TapLike }

export interface TransportFactory {
  /** A new transport on the shared backend (same bus, server or cluster). */
  create: () => Promise<Transport> | Transport
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

  /** The `n` of each deliver envelope's frame, in arrival order; -1 for other types. */
  numbers (): number[] {
    return this.received.map((e) => e.type === 'deliver' ? (JSON.parse(e.frame) as { n: number }).n : -1)
  }
}

const frame = (n: number): string => JSON.stringify({ type: 'message', n, text: 'héllo\nwörld ✓' })
// One send time for the whole suite, so an envelope built twice compares
// equal; a transport carries the stamp, it never judges it.
const SENT_AT = Date.now()
const deliver = (origin: string, n: number, target: Target = { kind: 'all' }): DeliverEnvelope =>
  ({ type: 'deliver', origin, target, frame: frame(n), sentAt: SENT_AT })
const toTopic = (origin: string, n: number, topic: string): DeliverEnvelope => deliver(origin, n, { kind: 'topic', topic })

export function transportSuite (t: TapLike, name: string, factory: TransportFactory): void {
  const timeout = factory.deliveryTimeoutMs ?? 5000

  interface Started { transport: Transport, inbox: Inbox, id: string }

  async function started (t: TapLike, prefix: string): Promise<Started> {
    const transport = await factory.create()
    const inbox = new Inbox()
    const id = uniqueId(prefix)
    t.teardown(() => transport.close())
    await transport.start(id, inbox.handler)
    return { transport, inbox, id }
  }

  t.test(`${name}: start resolves once subscribed, so the next publish arrives`, async (t) => {
    const a = await started(t, 'a')
    const b = await started(t, 'b')
    t.equal(b.transport.state(), 'up')
    await a.transport.publish(deliver(a.id, 1))
    const [got] = await b.inbox.waitFor(1, timeout)
    t.same(got, deliver(a.id, 1), 'frame text arrives byte for byte')
  })

  // The race a backend must not lose: subscribed but not yet positioned, so
  // the first publish after start() slips past a fresh instance.
  t.test(`${name}: a fresh instance receives a publish made the moment start() resolves, every time`, async (t) => {
    const a = await started(t, 'a')
    for (let round = 0; round < 10; round++) {
      const fresh = await started(t, `fresh${round}`)
      await a.transport.publish(deliver(a.id, round))
      await fresh.inbox.waitFor(1, timeout)
      t.same(fresh.inbox.numbers(), [round], `round ${round}`)
      await fresh.transport.close()
    }
  })

  // The same race for topics: a publish made the moment subscribe() resolves.
  t.test(`${name}: subscribe resolves once confirmed, so the next publish to the topic arrives, every time`, async (t) => {
    const a = await started(t, 'a')
    const b = await started(t, 'b')
    for (let round = 0; round < 10; round++) {
      const topic = uniqueId(`topic${round}`)
      await b.transport.subscribe(topic)
      await a.transport.publish(toTopic(a.id, round, topic))
      await b.inbox.waitFor(round + 1, timeout)
      t.same(b.inbox.received[round], toTopic(a.id, round, topic), `round ${round}`)
    }
  })

  t.test(`${name}: an instance never receives its own envelopes`, async (t) => {
    const a = await started(t, 'a')
    const b = await started(t, 'b')
    await a.transport.subscribe('prices')
    await b.transport.subscribe('prices')
    await a.transport.publish(deliver(a.id, 1))
    await a.transport.publish(toTopic(a.id, 2, 'prices'))
    await a.transport.publish(deliver(a.id, 3), [a.id, b.id])
    await b.inbox.waitFor(3, timeout)
    // b saw all three, so a's own copies (if any were coming) had time to arrive too.
    t.equal(a.inbox.received.length, 0)
  })

  t.test(`${name}: fans out to every subscribed instance, in publish order`, async (t) => {
    const a = await started(t, 'a')
    const b = await started(t, 'b')
    const c = await started(t, 'c')
    await b.transport.subscribe('prices')
    await c.transport.subscribe('prices')
    for (let n = 0; n < 20; n++) await a.transport.publish(toTopic(a.id, n, 'prices'))
    for (const inbox of [b.inbox, c.inbox]) {
      const got = await inbox.waitFor(20, timeout)
      t.same(inbox.numbers(), [...Array(20).keys()])
      t.same(got[0], toTopic(a.id, 0, 'prices'))
    }
  })

  t.test(`${name}: an instance with no subscriber to a topic receives none of its envelopes`, async (t) => {
    const a = await started(t, 'a')
    const b = await started(t, 'b')
    const c = await started(t, 'c')
    await b.transport.subscribe('news')
    await c.transport.subscribe('sport')
    await a.transport.publish(toTopic(a.id, 1, 'news'))
    await a.transport.publish(toTopic(a.id, 2, 'weather'))
    await a.transport.publish(deliver(a.id, 3))
    await b.inbox.waitFor(2, timeout)
    await c.inbox.waitFor(1, timeout)
    t.same(b.inbox.numbers(), [1, 3], 'b: its topic and the sentinel')
    t.same(c.inbox.numbers(), [3], 'c: only the sentinel')
  })

  t.test(`${name}: subscribing twice delivers once; unsubscribe stops delivery of that topic only`, async (t) => {
    const a = await started(t, 'a')
    const b = await started(t, 'b')
    await b.transport.subscribe('x')
    await b.transport.subscribe('x')
    await b.transport.subscribe('y')
    await a.transport.publish(toTopic(a.id, 1, 'x'))
    await a.transport.publish(deliver(a.id, 2))
    await b.inbox.waitFor(2, timeout)
    t.same(b.inbox.numbers(), [1, 2], 'one copy despite two subscribes')

    await b.transport.unsubscribe('x')
    await b.transport.unsubscribe('never-subscribed')
    await a.transport.publish(toTopic(a.id, 3, 'x'))
    await a.transport.publish(toTopic(a.id, 4, 'y'))
    await a.transport.publish(deliver(a.id, 5))
    await b.inbox.waitFor(4, timeout)
    t.same(b.inbox.numbers(), [1, 2, 4, 5], 'nothing for x after unsubscribe; y still arrives')

    await b.transport.subscribe('x')
    await a.transport.publish(toTopic(a.id, 6, 'x'))
    await b.inbox.waitFor(5, timeout)
    t.same(b.inbox.numbers(), [1, 2, 4, 5, 6], 'subscribing again resumes delivery')
  })

  t.test(`${name}: publish with \`to\` reaches only the listed instances, interest or not`, async (t) => {
    const a = await started(t, 'a')
    const b = await started(t, 'b')
    const c = await started(t, 'c')
    const d = await started(t, 'd')
    await d.transport.subscribe('t')
    await a.transport.publish(deliver(a.id, 1, { kind: 'client', id: 'x' }), [b.id])
    await a.transport.publish(deliver(a.id, 2, { kind: 'user', userId: 'u' }), [b.id, c.id, b.id])
    // `to` wins over interest: b did not subscribe to t, d did.
    await a.transport.publish(toTopic(a.id, 3, 't'), [b.id])
    await a.transport.publish(deliver(a.id, 4), [])
    // A broadcast after them: once an instance has it, it would have had the others too.
    await a.transport.publish(deliver(a.id, 5))
    await b.inbox.waitFor(4, timeout)
    await c.inbox.waitFor(2, timeout)
    await d.inbox.waitFor(1, timeout)
    t.same(b.inbox.numbers(), [1, 2, 3, 5], 'b: each once, even when listed twice')
    t.same(c.inbox.numbers(), [2, 5])
    t.same(d.inbox.numbers(), [5], 'd: not listed, so not even its own topic')
    t.same(b.inbox.received[0]?.type === 'deliver' ? b.inbox.received[0].target : null, { kind: 'client', id: 'x' })
  })

  t.test(`${name}: every envelope type round-trips intact`, async (t) => {
    const a = await started(t, 'a')
    const b = await started(t, 'b')
    await b.transport.subscribe('topic ✓\nwith newline')
    const sent: Array<[Envelope, string[] | undefined]> = [
      [deliver(a.id, 1), undefined],
      [toTopic(a.id, 2, 'topic ✓\nwith newline'), undefined],
      [{ type: 'deliver', origin: a.id, target: { kind: 'user', userId: 'ü' }, frame: '{"a":"\\n"}\n raw \u2028 😀', sentAt: SENT_AT }, [b.id]],
      [{ type: 'close', origin: a.id, target: { kind: 'client', id: 'c1' }, code: 4001, reason: 'kicked ✓', sentAt: SENT_AT }, [b.id]],
      [{ type: 'close', origin: a.id, target: { kind: 'user', userId: 'u1' }, code: 1008, reason: '', sentAt: 0 }, undefined],
      [{ type: 'query', origin: a.id, requestId: 'r1', clientIds: ['c1', 'c2'], sentAt: SENT_AT }, [b.id]],
      [{ type: 'subscribe', origin: a.id, target: { kind: 'user', userId: 'ü' }, topic: 'chat:room-1', sentAt: SENT_AT }, [b.id]],
      [{ type: 'unsubscribe', origin: a.id, target: { kind: 'client', id: 'c1' }, topic: 'news', sentAt: SENT_AT }, undefined],
      [{ type: 'query', origin: a.id, requestId: 'r2', clientIds: [], sentAt: SENT_AT + 1 }, undefined],
      [{
        type: 'reply',
        origin: a.id,
        sentAt: SENT_AT,
        requestId: 'r1',
        connections: [
          { id: 'c1', ip: '::1', userId: null, topics: [], connectedAt: '2024-01-01T00:00:00.000Z', instanceId: a.id },
          { id: 'c2', ip: '10.0.0.1', userId: 'ü', topics: ['x', 'y'], connectedAt: '2024-01-01T00:00:01.000Z', instanceId: a.id }
        ]
      }, [b.id]]
    ]
    for (const [envelope, to] of sent) await a.transport.publish(envelope, to)
    const got = await b.inbox.waitFor(sent.length, timeout)
    t.same(got, sent.map(([envelope]) => envelope), 'send times included')
  })

  // Receivers drop envelopes older than maxEnvelopeAgeMs by this stamp; a
  // transport that stamped a later time would let stale news through.
  t.test(`${name}: an unstamped envelope arrives stamped with its send time (or unstamped, in process)`, async (t) => {
    const a = await started(t, 'a')
    const b = await started(t, 'b')
    const before = Date.now()
    await a.transport.publish({ type: 'query', origin: a.id, requestId: 'r', clientIds: [] }, [b.id])
    const after = Date.now()
    const [got] = await b.inbox.waitFor(1, timeout)
    const sentAt = got?.sentAt
    t.ok(sentAt === undefined || (sentAt >= before && sentAt <= after), `sentAt ${String(sentAt)} within [${before}, ${after}]`)
  })

  t.test(`${name}: subscribe and publish outside start..close reject with a coded error`, async (t) => {
    const fresh = await factory.create()
    t.teardown(() => fresh.close())
    t.equal(fresh.state(), 'down', 'down before start')
    await t.rejects(fresh.publish(deliver('x', 1)), { code: HubErrorCodes.transport })
    await t.rejects(fresh.subscribe('x'), { code: HubErrorCodes.transport })
    const a = await started(t, 'a')
    await a.transport.close()
    t.equal(a.transport.state(), 'down', 'down after close')
    await t.rejects(a.transport.publish(deliver(a.id, 1)), { code: HubErrorCodes.transport })
    await t.rejects(a.transport.subscribe('x'), { code: HubErrorCodes.transport })
    await a.transport.unsubscribe('x')
    await t.rejects(a.transport.start(a.id, () => {}), { code: HubErrorCodes.transport })
  })

  t.test(`${name}: close is idempotent and stops delivery`, async (t) => {
    const a = await started(t, 'a')
    const b = await started(t, 'b')
    const c = await started(t, 'c')
    await b.transport.subscribe('x')
    await b.transport.close()
    await b.transport.close()
    await a.transport.publish(deliver(a.id, 1))
    await a.transport.publish(toTopic(a.id, 2, 'x'), [b.id, c.id])
    await c.inbox.waitFor(2, timeout)
    t.equal(b.inbox.received.length, 0)
  })
}

import t from 'tap'
import { build, connect, type Frame, type TestClient } from './helpers.js'
import { MemoryBus, MemoryTransport, type Envelope, type EnvelopeHandler, type Transport, type WsHubOptions } from '../lib/index.js'
import { MemoryHistory } from '../lib/cluster/memory/memory-history.js'

const TOPIC = 'feed:o'

/** What the receiving side does with a history envelope: pass it, drop it, or keep it back for later. */
type Verdict = 'pass' | 'drop' | 'hold'

/** A MemoryTransport whose receiving side can lose, hold back and repeat envelopes, as a broker can. */
class FaultyTransport implements Transport {
  readonly inner: MemoryTransport
  judge: (offset: number) => Verdict = () => 'pass'
  readonly held: Envelope[] = []
  #deliver: EnvelopeHandler = () => {}

  constructor (bus: MemoryBus) {
    this.inner = new MemoryTransport(bus)
  }

  async start (instanceId: string, onEnvelope: EnvelopeHandler): Promise<void> {
    this.#deliver = onEnvelope
    await this.inner.start(instanceId, (envelope) => {
      const offset = envelope.type === 'deliver' ? envelope.position?.offset : undefined
      const verdict = offset === undefined ? 'pass' : this.judge(offset)
      if (verdict === 'pass') onEnvelope(envelope)
      else if (verdict === 'hold') this.held.push(envelope)
    })
  }

  /** Lets the held envelopes through, each twice (a redelivery). */
  release (): void {
    for (const envelope of this.held.splice(0)) {
      this.#deliver(envelope)
      this.#deliver(envelope)
    }
  }

  publish = async (envelope: Envelope, to?: readonly string[]): Promise<void> => { await this.inner.publish(envelope, to) }
  subscribe = async (topic: string): Promise<void> => { await this.inner.subscribe(topic) }
  unsubscribe = async (topic: string): Promise<void> => { await this.inner.unsubscribe(topic) }
  state = (): 'up' | 'down' => this.inner.state()
  close = async (): Promise<void> => { await this.inner.close() }
}

async function pair (t: Tap): Promise<{ a: Awaited<ReturnType<typeof build>>, b: Awaited<ReturnType<typeof build>>, faulty: FaultyTransport }> {
  const bus = new MemoryBus()
  const store = new MemoryHistory()
  t.teardown(() => store.close())
  const common = (transport: Transport): WsHubOptions => ({
    broker: { type: 'custom', transport },
    history: { type: 'custom', history: store },
    maxRecovery: 100_000,
    topics: { namespaces: { feed: { history: { size: 100_000, ttlMs: 60_000 } } } }
  })
  const faulty = new FaultyTransport(bus)
  const a = await build(t, common(new MemoryTransport(bus)))
  const b = await build(t, common(faulty))
  return { a, b, faulty }
}
interface Tap { teardown: (fn: () => unknown) => void }

async function subscriber (wsUrl: string, since?: { offset: number, epoch: string }): Promise<TestClient> {
  const client = await connect(wsUrl)
  client.send(since === undefined ? { type: 'subscribe', topic: TOPIC, id: 's' } : { type: 'subscribe', topic: TOPIC, since, id: 's' })
  await client.next('ack')
  return client
}

/** The offsets of the publications a client got, once it has `until` (in order of arrival). */
async function offsetsUpTo (client: TestClient, until: number): Promise<number[]> {
  const deadline = Date.now() + 10_000
  for (;;) {
    const offsets = client.frames.filter((f: Frame) => f.type === 'publish').map((f) => Number(f.offset))
    if (offsets.includes(until)) return offsets
    if (Date.now() > deadline) throw new Error(`no offset ${until}; have ${JSON.stringify(offsets.slice(-5))}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i)

t.test('an envelope lost between instances is filled from the store, in order', async (t) => {
  const { a, b, faulty } = await pair(t)
  const client = await subscriber(b.wsUrl)
  t.teardown(() => client.close())
  faulty.judge = (offset) => offset === 3 || offset === 4 ? 'drop' : 'pass'
  for (let n = 1; n <= 6; n++) await a.app.wsHub.publish(TOPIC, { n })
  t.same(await offsetsUpTo(client, 6), range(1, 6), 'offsets 3 and 4 were read when 5 showed the gap')
  t.notOk(client.frames.some((f) => f.type === 'reset'), 'no reset: the store had them')
})

t.test('reordered and repeated envelopes: delivered once each, in offset order', async (t) => {
  const { a, b, faulty } = await pair(t)
  const client = await subscriber(b.wsUrl)
  t.teardown(() => client.close())
  // 2 and 3 are held back, so 4 arrives first and the gap is filled from the store.
  faulty.judge = (offset) => offset === 2 || offset === 3 ? 'hold' : 'pass'
  for (let n = 1; n <= 4; n++) await a.app.wsHub.publish(TOPIC, { n })
  t.same(await offsetsUpTo(client, 4), range(1, 4))
  faulty.judge = () => 'pass'
  // The late ones arrive now, twice each: all are duplicates.
  faulty.release()
  await a.app.wsHub.publish(TOPIC, { n: 5 })
  t.same(await offsetsUpTo(client, 5), range(1, 5), 'late and repeated envelopes dropped')
})

t.test('the seam: 50 clients recover on one instance while another publishes at full speed', async (t) => {
  const { a, b } = await pair(t)
  const first = await a.app.wsHub.publish(TOPIC, { n: 1 })
  const epoch = String(first.epoch)
  let published = 1
  let stopAt = Infinity
  const publishing = (async () => {
    while (published < stopAt) {
      const batch = []
      for (let i = 0; i < 20 && published < stopAt; i++) {
        published++
        batch.push(a.app.wsHub.publish(TOPIC, { n: published }))
      }
      await Promise.all(batch)
      await new Promise((resolve) => setImmediate(resolve))
    }
  })()
  const joining: Array<Promise<{ client: TestClient, since: number }>> = []
  for (let i = 0; i < 50; i++) {
    // Each starts from a point up to 100 behind the head, at staggered times.
    const since = Math.max(0, published - (i % 5) * 25)
    joining.push(subscriber(b.wsUrl, { offset: since, epoch }).then((client) => ({ client, since })))
    await new Promise((resolve) => setTimeout(resolve, 2))
  }
  const clients = await Promise.all(joining)
  stopAt = published + 200
  await publishing
  const total = published
  t.ok(total > 400, `${total} publications`)
  let perfect = 0
  for (const { client, since } of clients) {
    t.teardown(() => client.close())
    const offsets = await offsetsUpTo(client, total)
    const subscribed = client.frames.find((f) => f.type === 'subscribed')
    if (subscribed?.recovered !== true) t.fail(`since ${since}: not recovered: ${JSON.stringify(subscribed)}`)
    const expected = range(since + 1, total)
    if (JSON.stringify(offsets) === JSON.stringify(expected)) perfect++
    else t.fail(`since ${since}: a gap or a duplicate: ${JSON.stringify(offsets.slice(0, 10))}...`)
  }
  t.equal(perfect, 50, 'every client got every offset after its since exactly once, in order')
})

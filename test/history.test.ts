import t from 'tap'
import { build, connect, type Frame, type TestClient } from './helpers.js'
import type { WsHubOptions } from '../lib/index.js'

const OPTIONS: WsHubOptions = {
  maxRecovery: 5,
  topics: { namespaces: { feed: { history: { size: 100, ttlMs: 60_000 } }, plain: {} } }
}

async function subscribe (client: TestClient, topic: string, since?: { offset: number, epoch: string }): Promise<Frame> {
  client.send(since === undefined ? { type: 'subscribe', topic, id: 's' } : { type: 'subscribe', topic, since, id: 's' })
  const subscribed = await client.next('subscribed')
  await client.next('ack')
  return subscribed
}

/** Every frame of a type that arrived up to the sentinel's answer, in order. */
async function drain (client: TestClient, type: string): Promise<Frame[]> {
  await client.nothingBefore('__none__')
  const found = client.frames.filter((f) => f.type === type)
  client.frames.splice(0)
  return found
}

t.test('publications into a history topic carry offset and epoch; a subscribe answers the position', async (t) => {
  const { app, wsUrl } = await build(t, OPTIONS)
  const a = await connect(wsUrl)
  t.teardown(() => a.close())
  const first = await subscribe(a, 'feed:x')
  t.equal(first.offset, 0, 'before the first publication the offset is 0')
  t.type(first.epoch, 'string')
  t.notOk('recovered' in first, 'no recovered without since')
  const report = await app.wsHub.publish('feed:x', { n: 1 })
  // An empty topic's epoch is provisional: the first publication names the stream's.
  t.match(report, { recipients: 1, offset: 1 })
  const publish = await a.next('publish')
  t.match(publish, { offset: 1, epoch: report.epoch, message: { n: 1 } })
  t.notOk(a.frames.some((f) => f.type === 'reset'), 'no reset from an empty topic')

  const plain = await subscribe(a, 'plain:y')
  t.notOk('offset' in plain, 'a topic without history answers the plain way')
  const plainReport = await app.wsHub.publish('plain:y', 1)
  t.notOk('offset' in plainReport)
  t.notOk('offset' in await a.next('publish'), 'and its publications carry no offset')

  const b = await connect(wsUrl)
  t.teardown(() => b.close())
  t.match(await subscribe(b, 'feed:x'), { offset: 1, epoch: report.epoch }, 'a later subscriber learns the current offset')
})

t.test('since: the missed publications, then subscribed recovered:true, then live ones', async (t) => {
  const { app, wsUrl } = await build(t, OPTIONS)
  const a = await connect(wsUrl)
  t.teardown(() => a.close())
  await subscribe(a, 'feed:r')
  const start = await app.wsHub.publish('feed:r', { n: 1 })
  for (let n = 2; n <= 3; n++) await app.wsHub.publish('feed:r', { n })
  a.close()
  const b = await connect(wsUrl)
  t.teardown(() => b.close())
  b.send({ type: 'subscribe', topic: 'feed:r', since: { offset: 1, epoch: String(start.epoch) }, id: 's' })
  await b.next('ack')
  await app.wsHub.publish('feed:r', { n: 4 })
  await b.nothingBefore('__none__')
  const order = b.frames.filter((f) => f.type === 'publish' || f.type === 'subscribed')
  t.same(order.map((f) => f.type === 'publish' ? f.offset : `subscribed:${String(f.offset)}:${String(f.recovered)}`), [2, 3, 'subscribed:3:true', 4], 'replayed in order, then subscribed at the last replayed, then live')
})

t.test('recovery refused: another epoch, or more than maxRecovery behind', async (t) => {
  const { app, wsUrl } = await build(t, OPTIONS)
  const a = await connect(wsUrl)
  t.teardown(() => a.close())
  await subscribe(a, 'feed:z')
  for (let n = 1; n <= 8; n++) await app.wsHub.publish('feed:z', { n })
  const start = (await drain(a, 'publish'))[0] as Frame

  const other = await connect(wsUrl)
  t.teardown(() => other.close())
  const wrongEpoch = await subscribe(other, 'feed:z', { offset: 2, epoch: 'not-this-one' })
  t.match(wrongEpoch, { recovered: false, offset: 8, epoch: start.epoch }, 'another epoch: recovered false with the current position')
  t.same(await drain(other, 'publish'), [], 'nothing replayed')

  const behind = await connect(wsUrl)
  t.teardown(() => behind.close())
  t.match(await subscribe(behind, 'feed:z', { offset: 1, epoch: String(start.epoch) }), { recovered: false, offset: 8 }, '7 behind with maxRecovery 5')
  t.same(await drain(behind, 'publish'), [])

  const near = await connect(wsUrl)
  t.teardown(() => near.close())
  near.send({ type: 'subscribe', topic: 'feed:z', since: { offset: 4, epoch: start.epoch }, id: 's' })
  await near.next('ack')
  const frames = await drain(near, 'publish')
  t.same(frames.map((f) => f.offset), [5, 6, 7, 8], 'within maxRecovery: replayed')

  await app.wsHub.publish('feed:z', { n: 9 })
  t.match(await near.next('publish'), { offset: 9 }, 'then live')
})

t.test('the history frame and GET /topics/:topic/history', async (t) => {
  const { app, url, wsUrl } = await build(t, OPTIONS)
  for (let n = 1; n <= 4; n++) await app.wsHub.publish('feed:h', { n })
  const a = await connect(wsUrl)
  t.teardown(() => a.close())
  a.send({ type: 'history', topic: 'feed:h', limit: 2, id: 'h1' })
  const last2 = await a.next('history')
  t.match(last2, { id: 'h1', topic: 'feed:h', offset: 4, complete: true })
  t.same((last2.publications as Frame[]).map((f) => f.offset), [3, 4], 'without since: the last `limit`')
  const epoch = String(last2.epoch)
  a.send({ type: 'history', topic: 'feed:h', since: { offset: 1, epoch }, id: 'h2' })
  t.same(((await a.next('history')).publications as Frame[]).map((f) => (f.message as { n: number }).n), [2, 3, 4])
  a.send({ type: 'history', topic: 'plain:h', id: 'h3' })
  t.match(await a.next('error'), { code: 'history_off', id: 'h3' })

  const page = await fetch(`${url}/api/topics/feed:h/history?sinceOffset=2&epoch=${encodeURIComponent(epoch)}&limit=10`)
  t.equal(page.status, 200)
  const body = await page.json() as { publications: Frame[], offset: number, epoch: string, complete: boolean }
  t.same(body.publications.map((f) => f.offset), [3, 4])
  t.match(body, { offset: 4, epoch, complete: true })
  const off = await fetch(`${url}/api/topics/plain:h/history`)
  t.equal(off.status, 404)
  t.match(await off.json(), { code: 'history_off' })
  const tooMany = await fetch(`${url}/api/topics/feed:h/history?sinceOffset=0&epoch=${encodeURIComponent(epoch)}&limit=2`)
  t.match(await tooMany.json(), { publications: [], complete: false }, 'more than limit after since: incomplete, nothing')
})

t.test('idempotent publish: facade, REST and client', async (t) => {
  const { app, url, wsUrl } = await build(t, OPTIONS)
  const a = await connect(wsUrl)
  t.teardown(() => a.close())
  await subscribe(a, 'feed:i')
  await subscribe(a, 'plain:i')

  const first = await app.wsHub.publish('feed:i', 'one', { idempotencyKey: 'k1' })
  const again = await app.wsHub.publish('feed:i', 'one', { idempotencyKey: 'k1' })
  t.equal(again.offset, first.offset, 'a duplicate answers the first offset')
  t.equal(again.recipients, 0, 'and is not delivered')
  t.throws(() => app.wsHub.publish('feed:i', 'x', { idempotencyKey: '' }), { code: 'WS_HUB_INVALID_ARGUMENT' })

  const post = async (topic: string): Promise<Record<string, unknown>> => {
    const response = await fetch(`${url}/api/topics/${topic}/publish`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ message: 'rest', idempotencyKey: 'k2' }) })
    t.equal(response.status, 200)
    return await response.json() as Record<string, unknown>
  }
  const r1 = await post('feed:i')
  t.same(await post('feed:i'), { ...r1, recipients: 0, remoteInstances: 0 }, 'REST: the same offset')
  await post('plain:i')
  await post('plain:i')

  a.send({ type: 'publish', topic: 'feed:i', message: 'ws', idempotencyKey: 'k3', id: 'p1' })
  const ack1 = await a.next('ack')
  a.send({ type: 'publish', topic: 'feed:i', message: 'ws', idempotencyKey: 'k3', id: 'p2' })
  const ack2 = await a.next('ack')
  t.equal(ack2.offset, ack1.offset, 'client: acked with the first offset')

  const publishes = await drain(a, 'publish')
  t.same(publishes.map((f) => `${String(f.topic)}:${JSON.stringify(f.message)}`), ['feed:i:"one"', 'feed:i:"rest"', 'plain:i:"rest"', 'feed:i:"ws"'], 'each delivered once, also on a topic without history')
  t.same(publishes.filter((f) => f.topic === 'feed:i').map((f) => f.offset), [1, 2, 3])
})

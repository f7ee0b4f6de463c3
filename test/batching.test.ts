import t from 'tap'
import { build, connect, TestClient } from './helpers.js'

t.test('clients that opt in get {"type":"batch"} frames; others are unaffected', async (t) => {
  const { wsUrl, app } = await build(t, { batch: { maxDelayMs: 30, maxMessages: 100 } })
  const byQuery = await connect(`${wsUrl}?batch=1`)
  const byProtocol = await new TestClient(wsUrl, ['ws-hub.v1.batch'] as never).ready()
  const plain = await connect(wsUrl)
  t.equal(byProtocol.socket.protocol, 'ws-hub.v1.batch')
  for (let n = 0; n < 5; n++) await app.wsHub.broadcast(n)

  for (const client of [byQuery, byProtocol]) {
    const batch = await client.next('batch')
    t.match(batch.timestamp, /Z$/)
    const messages = batch.messages as Array<Record<string, unknown>>
    t.same(messages.map((m) => [m.type, m.message]), [0, 1, 2, 3, 4].map((n) => ['server-broadcast', n]), 'in order, as one frame')
    // The sentinel's pong comes batched too, behind anything queued before it.
    const sentinel = `sentinel-${String(client.socket.protocol)}`
    const answered = (f: Record<string, unknown>): boolean => f.type === 'batch' && (f.messages as Array<Record<string, unknown>>).some((m) => m.type === 'pong' && m.id === sentinel)
    t.ok(await client.nothingBefore('server-broadcast', () => client.send({ type: 'ping', id: sentinel }), answered), 'no unbatched copies')
  }
  for (let n = 0; n < 5; n++) t.equal((await plain.next('server-broadcast')).message, n)
  t.ok(await plain.nothingBefore('batch'))
})

t.test('maxMessages flushes a full batch at once; inner frames are the frames unbatched clients get', async (t) => {
  const { wsUrl, app } = await build(t, { batch: { maxDelayMs: 60_000, maxMessages: 3 } })
  const batched = await connect(`${wsUrl}?batch=1`)
  const plainRaw: string[] = []
  const plain = await connect(wsUrl)
  plain.socket.on('message', (data) => plainRaw.push(data.toString()))
  const batchedRaw: string[] = []
  batched.socket.on('message', (data) => batchedRaw.push(data.toString()))
  for (let n = 0; n < 3; n++) await app.wsHub.broadcast({ n, text: 'é"\\' })
  const batch = await batched.next('batch', 2000)
  t.equal((batch.messages as unknown[]).length, 3, 'flushed without waiting for the minute-long delay')
  await plain.next('server-broadcast')
  await plain.next('server-broadcast')
  await plain.next('server-broadcast')
  const inner = batchedRaw[0]?.slice('{"type":"batch","messages":['.length, batchedRaw[0].lastIndexOf('],"timestamp"'))
  t.equal(inner, plainRaw.join(','), 'byte-identical inner frames')
})

t.test('batch: false ignores the opt-in', async (t) => {
  const { wsUrl, app } = await build(t, { batch: false })
  const c = await connect(`${wsUrl}?batch=1`)
  await app.wsHub.broadcast('x')
  t.equal((await c.next('server-broadcast')).message, 'x')
})

t.test('queued batches go out before the 1001 on shutdown', async (t) => {
  const { wsUrl, app } = await build(t, { batch: { maxDelayMs: 60_000, maxMessages: 100 } })
  const c = await connect(`${wsUrl}?batch=1`)
  await app.wsHub.broadcast('last words')
  await app.close()
  const batch = await c.next('batch')
  t.equal((batch.messages as Array<{ message: string }>)[0]?.message, 'last words')
  t.equal((await c.closed).code, 1001)
})

t.test('conflation: a burst reaches subscribers as first and latest, the rest counted', async (t) => {
  const { wsUrl, app } = await build(t)
  const c = await connect(wsUrl)
  c.send({ type: 'subscribe', topic: 'prices', id: 1 })
  await c.next('ack')
  const reports = []
  for (let n = 1; n <= 1000; n++) reports.push(await app.wsHub.publish('prices', { price: n }, { conflate: 'ACME', throttleMs: 50 }))
  t.same(reports[0], { recipients: 1, remoteInstances: 0 }, 'the first goes out at once')
  t.same(reports[1], { recipients: 0, remoteInstances: 0, conflated: true })
  await app.wsHub.publish('prices', { other: true }, { conflate: 'OTHER', throttleMs: 50 })
  t.same((await c.next('publish')).message, { price: 1 })
  t.same((await c.next('publish')).message, { other: true }, 'keys are independent')
  t.same((await c.next('publish')).message, { price: 1000 }, 'then the latest, at the window\'s end')
  t.ok(await c.nothingBefore('publish'), 'nothing else was queued')
  t.equal(app.wsHub.stats().conflatedDrops, 998)
})

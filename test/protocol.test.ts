import t from 'tap'
import { build, connect, TestClient, until } from './helpers.js'
import { internalsOf } from '../lib/internals.js'

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/

t.test('welcome comes first and carries the client id', async (t) => {
  const { wsUrl, app } = await build(t)
  const client = new TestClient(wsUrl)
  const first = await client.next()
  t.equal(first.type, 'welcome')
  t.match(first.clientId, /^[0-9a-f-]{36}$/)
  t.match(first.timestamp, ISO)
  t.ok(internalsOf(app.wsHub).connections.get(String(first.clientId)), 'registered under that id')
  client.close()
})

t.test('broadcast reaches everyone, sender included, with from and timestamp', async (t) => {
  const { wsUrl } = await build(t)
  const [a, b, c] = await Promise.all([connect(wsUrl), connect(wsUrl), connect(wsUrl)])
  a.send({ type: 'broadcast', message: { text: 'hi', n: [1, 2] } })
  for (const client of [a, b, c]) {
    const frame = await client.next('message')
    t.same(frame, { type: 'message', from: a.clientId, message: { text: 'hi', n: [1, 2] }, timestamp: frame.timestamp })
    t.match(frame.timestamp, ISO)
  }
})

t.test('direct reaches only its target', async (t) => {
  const { wsUrl } = await build(t)
  const [a, b, c] = await Promise.all([connect(wsUrl), connect(wsUrl), connect(wsUrl)])
  a.send({ type: 'direct', target: b.clientId, message: 'psst', id: 'd1' })
  const got = await b.next('direct')
  t.equal(got.from, a.clientId)
  t.equal(got.message, 'psst')
  t.same((await a.next('ack')).id, 'd1')
  t.ok(await c.nothingBefore('direct'), 'a bystander gets nothing')
  t.ok(await a.nothingBefore('direct'), 'the sender gets nothing')
})

t.test('direct to an unknown target answers unknown_target with the id', async (t) => {
  const { wsUrl } = await build(t)
  const a = await connect(wsUrl)
  a.send({ type: 'direct', target: 'nobody', message: 'x', id: 9 })
  const error = await a.next('error')
  t.equal(error.code, 'unknown_target')
  t.equal(error.id, 9)
  t.match(error.message, /nobody/)
  t.ok(await a.nothingBefore('ack'), 'no ack for a failed message')
})

t.test('subscribe, publish, unsubscribe', async (t) => {
  const { wsUrl, app } = await build(t)
  const [sub, other, pub] = await Promise.all([connect(wsUrl), connect(wsUrl), connect(wsUrl)])
  sub.send({ type: 'subscribe', topic: 'prices', id: 's' })
  await sub.next('ack')
  t.same(internalsOf(app.wsHub).connections.info(sub.clientId)?.topics, ['prices'])
  pub.send({ type: 'publish', topic: 'prices', message: { p: 1 }, id: 'p1' })
  const got = await sub.next('publish')
  t.same({ topic: got.topic, from: got.from, message: got.message }, { topic: 'prices', from: pub.clientId, message: { p: 1 } })
  t.equal((await pub.next('ack')).id, 'p1')
  t.ok(await other.nothingBefore('publish'), 'non-subscribers get nothing')
  t.ok(await pub.nothingBefore('publish'), 'the publisher is not subscribed')

  sub.send({ type: 'unsubscribe', topic: 'prices', id: 'u' })
  await sub.next('ack')
  t.same(internalsOf(app.wsHub).connections.info(sub.clientId)?.topics, [])
  pub.send({ type: 'publish', topic: 'prices', message: 2 })
  await pub.next('ack').catch(() => {})
  t.ok(await sub.nothingBefore('publish'), 'nothing after unsubscribe')
})

t.test('ping answers pong, carrying the id', async (t) => {
  const { wsUrl } = await build(t)
  const a = await connect(wsUrl)
  a.send({ type: 'ping' })
  t.notOk((await a.next('pong')).id)
  a.send({ type: 'ping', id: 'x' })
  t.equal((await a.next('pong')).id, 'x')
  t.ok(await a.nothingBefore('ack'), 'pong is the answer; no extra ack')
})

t.test('bad input is answered with error frames and never closes the socket', async (t) => {
  const { wsUrl } = await build(t)
  const a = await connect(wsUrl)
  const cases: Array<[unknown, string, RegExp?]> = [
    ['{not json', 'invalid_json'],
    ['[1,2]', 'invalid_message', /must be object/],
    ['"str"', 'invalid_message'],
    ['null', 'invalid_message'],
    [{ message: 1 }, 'invalid_message', /type/],
    [{ type: 5 }, 'invalid_message', /type must be string/],
    [{ type: 'broadcast' }, 'invalid_message', /message/],
    [{ type: 'direct', message: 1 }, 'invalid_message', /target/],
    [{ type: 'direct', target: 3, message: 1 }, 'invalid_message', /target must be string/],
    [{ type: 'subscribe', topic: '' }, 'invalid_message', /topic/],
    [{ type: 'subscribe' }, 'invalid_message', /topic/],
    [{ type: 'subscribe', topic: 'has space' }, 'invalid_message', /topic/],
    [{ type: 'publish', topic: 'x'.repeat(101), message: 1 }, 'invalid_message', /topic/],
    [{ type: 'subscribe', topic: 't', id: { nested: true } }, 'invalid_message', /id/],
    [{ type: 'frobnicate' }, 'unknown_type', /frobnicate/]
  ]
  for (const [input, code, detail] of cases) {
    a.send(input)
    const error = await a.next('error')
    t.equal(error.code, code, `${JSON.stringify(input)} -> ${code}`)
    t.type(error.message, 'string')
    if (detail !== undefined) t.match(error.message, detail)
  }
  a.socket.send(Buffer.from([1, 2, 3]), { binary: true })
  t.equal((await a.next('error')).code, 'unsupported_binary')

  a.send({ type: 'broadcast', id: 'e1' })
  const withId = await a.next('error')
  t.equal(withId.id, 'e1', 'a schema error echoes the id')

  a.send({ type: 'ping', id: 'alive' })
  t.equal((await a.next('pong')).id, 'alive', 'still open after all that')
})

t.test('announce option sends join and leave notices', async (t) => {
  const { wsUrl } = await build(t, { announce: true })
  const a = await connect(wsUrl)
  const b = await connect(wsUrl)
  const joined = await a.next('system')
  t.equal(joined.message, `Client ${b.clientId} joined.`)
  b.close()
  const left = await a.next('system')
  t.equal(left.message, `Client ${b.clientId} left.`)
})

t.test('announce is off by default', async (t) => {
  const { wsUrl } = await build(t)
  const a = await connect(wsUrl)
  await connect(wsUrl)
  t.ok(await a.nothingBefore('system'))
})

t.test('echo option returns the message to the sender', async (t) => {
  const { wsUrl } = await build(t, { echo: true })
  const a = await connect(wsUrl)
  const b = await connect(wsUrl)
  a.send({ type: 'direct', target: b.clientId, message: { m: 1 } })
  t.same((await a.next('echo')).message, { m: 1 })
})

t.test('echo is off by default', async (t) => {
  const { wsUrl } = await build(t)
  const a = await connect(wsUrl)
  a.send({ type: 'broadcast', message: 1 })
  await a.next('message')
  t.ok(await a.nothingBefore('echo'))
})

t.test('a closed client is unregistered and its topics forgotten', async (t) => {
  const { wsUrl, app } = await build(t)
  const a = await connect(wsUrl)
  a.send({ type: 'subscribe', topic: 'x', id: 1 })
  await a.next('ack')
  t.equal(internalsOf(app.wsHub).connections.subscribers('x').size, 1)
  a.close()
  await until(() => internalsOf(app.wsHub).connections.count === 0)
  t.equal(internalsOf(app.wsHub).connections.subscribers('x').size, 0)
})

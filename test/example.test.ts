import { spawn } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { Kafka, logLevel, Partitioners } from 'kafkajs'
import { buildExampleApp, PUBLIC_DIR } from '../example/app.js'
import { readConfig, readPriceFeedConfig, ConfigError, PRICE_FEED_GROUP, PRICE_FEED_TOPIC, type Env } from '../example/config.js'
import { priceAt, ticksAt } from '../example/prices.js'
import type { KafkaSourceRecord, SourceStatus } from '../lib/index.js'
import { connect, handshakeStatus, until, type Frame, type Tap } from './helpers.js'
import { kafkaBrokers } from './helpers/kafka-server.js'

// The example imports the plugin by its package name, which resolves to
// dist/: run `npm run build` before these tests (`npm test` does).

interface Running {
  app: FastifyInstance
  url: string
  wsUrl: string
}

async function start (t: Tap, env: Env = {}): Promise<Running> {
  const app = await buildExampleApp(env, { logger: false })
  t.teardown(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no address')
  return { app, url: `http://127.0.0.1:${address.port}`, wsUrl: `ws://127.0.0.1:${address.port}/ws` }
}

t.test('GET / serves the chat page and its assets', async (t) => {
  const { url } = await start(t)
  const page = await fetch(`${url}/`)
  t.equal(page.status, 200)
  t.match(page.headers.get('content-type'), /^text\/html/)
  const html = await page.text()
  for (const id of ['status', 'client-id', 'messages', 'message-input', 'send-broadcast', 'target-input', 'send-direct', 'prices']) {
    t.match(html, `id="${id}"`, `the page has #${id}`)
  }
  t.match(html, 'src="/chat.js"')

  const script = await fetch(`${url}/chat.js`)
  t.equal(script.status, 200)
  t.match(script.headers.get('content-type'), /javascript/)
  const css = await fetch(`${url}/chat.css`)
  t.match(css.headers.get('content-type'), /^text\/css/)
  await css.arrayBuffer()

  const js = await script.text()
  t.match(js, "import { HubClient } from '/client/index.js'", 'the page speaks through the typed client')
  t.match(js, 'client.broadcast(')
  t.match(js, 'client.direct(')
  // Frames carry other users' text: it must never be parsed as HTML.
  t.notMatch(js, /innerHTML|outerHTML|insertAdjacentHTML|document\.write/)
})

t.test('/client/ serves the compiled browser client as plain ES modules', async (t) => {
  const { url } = await start(t)
  for (const file of ['index.js', 'hub-client.js', 'backoff.js', 'emitter.js', 'errors.js']) {
    const response = await fetch(`${url}/client/${file}`)
    t.equal(response.status, 200, `${file} is served`)
    t.match(response.headers.get('content-type'), /javascript/)
    const source = await response.text()
    // A browser without a bundler can only follow relative imports.
    for (const [, specifier] of source.matchAll(/^\s*(?:import|export)\s[^;]*?from\s+'([^']+)'/gm)) {
      t.match(specifier, /^\.\/[a-z-]+\.js$/, `${file} imports ${specifier ?? ''} relatively`)
    }
  }
  t.equal((await fetch(`${url}/client/hub-client.js.map`)).status, 404, 'only the .js files')
  t.equal((await fetch(`${url}/client/hub-client.d.ts`)).status, 404)
})

t.test('the served page is the file in example/public', async (t) => {
  const { url } = await start(t)
  const served = await (await fetch(`${url}/`)).text()
  t.equal(served, await readFile(join(PUBLIC_DIR, 'index.html'), 'utf8'))
})

t.test('/docs serves Swagger UI and /docs/json documents the REST API', async (t) => {
  const { url } = await start(t)
  const ui = await fetch(`${url}/docs`)
  t.equal(ui.status, 200)
  t.match(await ui.text(), /swagger/i)

  const response = await fetch(`${url}/docs/json`)
  t.equal(response.status, 200)
  const spec = await response.json() as { openapi: string, info: { title: string, description: string }, paths: Record<string, Record<string, unknown>>, security?: unknown }
  t.match(spec.openapi, /^3\./)
  t.equal(spec.info.title, 'fastify-ws-hub example')
  t.match(spec.info.description, '/ws')
  t.match(spec.info.description, '[`/api/asyncapi.json`](/api/asyncapi.json)', 'the description links the AsyncAPI document')
  t.ok(spec.paths['/api/connections/broadcast']?.post, 'broadcast route documented')
  t.ok(spec.paths['/api/connections/{id}/send']?.post, 'send route documented')
  t.ok(spec.paths['/api/topics/{topic}/publish']?.post, 'publish route documented')
  t.ok(spec.paths['/api/connections']?.get, 'list route documented')
  t.notOk(spec.paths['/ws'], 'the WebSocket route is documented apart')
  t.notOk(spec.paths['/'], 'static files are not API routes')
  t.equal(spec.security, undefined, 'no API key scheme without API_KEY')
})

t.test('a client is welcomed and can chat', async (t) => {
  const { wsUrl } = await start(t)
  const a = await connect(wsUrl)
  const b = await connect(wsUrl)
  t.teardown(() => { a.close(); b.close() })
  t.match(a.clientId, /^[0-9a-f-]{36}$/)
  a.send({ type: 'broadcast', message: 'hello' })
  t.match(await b.next('message'), { from: a.clientId, message: 'hello' })
  b.send({ type: 'direct', target: a.clientId, message: 'psst' })
  t.match(await a.next('direct'), { from: b.clientId, message: 'psst' })
})

t.test('the roll message type', async (t) => {
  const { wsUrl } = await start(t)
  const client = await connect(wsUrl)
  t.teardown(() => client.close())

  client.send({ type: 'roll', sides: 20, id: 'r1' })
  const rolled = await client.next('rolled')
  t.equal(rolled.sides, 20)
  t.ok(Number.isInteger(rolled.value) && Number(rolled.value) >= 1 && Number(rolled.value) <= 20, `value ${String(rolled.value)} is on a d20`)
  t.equal((await client.next('ack')).id, 'r1', 'acked once handled')

  client.send({ type: 'roll' })
  t.equal((await client.next('rolled')).sides, 6, 'six sides by default')

  for (const sides of [1, 101, 2.5, '6', null]) {
    client.send({ type: 'roll', sides, id: `bad-${String(sides)}` })
    t.match(await client.next('error'), { code: 'invalid_sides', id: `bad-${String(sides)}` }, `sides ${JSON.stringify(sides)} is refused`)
  }

  client.send({ type: 'dance', id: 9 })
  t.match(await client.next('error'), { code: 'unknown_type', id: 9 }, 'types the service does not know stay unknown')
})

t.test('the ticker publishes prices to subscribers', async (t) => {
  const { wsUrl } = await start(t)
  const client = await connect(wsUrl)
  t.teardown(() => client.close())
  client.send({ type: 'subscribe', topic: 'prices', id: 1 })
  t.equal((await client.next('ack')).id, 1)
  // One tick a second: wait a little over one.
  const frame = await client.next('publish', 2500)
  t.equal(frame.topic, 'prices')
  t.equal(frame.from, 'server')
  const tick = frame.message as { symbol: unknown, price: unknown }
  t.type(tick.symbol, 'string')
  t.type(tick.price, 'number')
})

t.test('prices is server-only: a client publish is refused with forbidden, and a bad tick from the server too', async (t) => {
  const { wsUrl, app } = await start(t)
  const client = await connect(wsUrl)
  t.teardown(() => client.close())
  client.send({ type: 'publish', topic: 'prices', message: { symbol: 'ACME', price: 0.01 }, id: 1 })
  t.match(await client.next('error'), { code: 'forbidden', id: 1 })
  client.send({ type: 'subscribe', topic: 'chat:lobby', id: 2 })
  t.equal((await client.next('ack')).id, 2, 'chat rooms are open')
  client.send({ type: 'publish', topic: 'chat:lobby', message: 'hi', id: 3 })
  t.match(await client.next('publish'), { topic: 'chat:lobby', message: 'hi' })
  client.send({ type: 'subscribe', topic: 'other:x', id: 4 })
  t.match(await client.next('error'), { code: 'unknown_namespace', id: 4 })
  t.throws(() => app.wsHub.publish('prices', { symbol: 'ACME' }), { code: 'WS_HUB_INVALID_MESSAGE' })
})

t.test('notifications: user:<id> is its owner\'s inbox, with history a returning device catches up from', async (t) => {
  const { wsUrl, url } = await start(t)
  const laptop = await connect(`${wsUrl}?user=alice`)
  t.teardown(() => laptop.close())
  laptop.send({ type: 'subscribe', topic: 'user:bob', id: 1 })
  t.match(await laptop.next('error'), { code: 'forbidden', id: 1 }, 'only the owner subscribes')
  laptop.send({ type: 'subscribe', topic: 'user:alice', id: 2 })
  const subscribed = await laptop.next('subscribed')
  t.match(subscribed, { topic: 'user:alice', offset: 0, epoch: String })
  laptop.send({ type: 'publish', topic: 'user:alice', message: { text: 'forged' }, id: 3 })
  t.match(await laptop.next('error'), { code: 'forbidden', id: 3 }, 'only the server publishes')

  const pushed = await fetch(`${url}/api/topics/user:alice/publish`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ message: { text: 'Your order shipped', at: new Date().toISOString() } })
  })
  t.equal(pushed.status, 200)
  // The inbox was idle: its first publication starts the stream's epoch.
  const { epoch } = await pushed.json() as { epoch: string }
  t.match(await laptop.next('publish'), { topic: 'user:alice', from: 'server', message: { text: 'Your order shipped' }, offset: 1, epoch })
  laptop.send({ type: 'notify-me', id: 4 })
  t.match(await laptop.next('publish'), { topic: 'user:alice', message: { text: 'You asked for a notification' }, offset: 2, epoch })

  // A phone that saw nothing after offset 0 gets both, then is live.
  const phone = await connect(`${wsUrl}?user=alice`)
  t.teardown(() => phone.close())
  phone.send({ type: 'subscribe', topic: 'user:alice', since: { offset: 0, epoch: subscribed.epoch }, id: 1 })
  t.match(await phone.next('publish'), { offset: 1, message: { text: 'Your order shipped' } })
  t.match(await phone.next('publish'), { offset: 2 })
  t.match(await phone.next('subscribed'), { topic: 'user:alice', offset: 2, epoch, recovered: true })
})

t.test('prices are a function of the clock, so instances agree', async (t) => {
  t.equal(priceAt('ACME', 1_700_000_000), priceAt('ACME', 1_700_000_000))
  t.not(priceAt('ACME', 1_700_000_000), priceAt('ACME', 1_700_000_030), 'and they move')
  t.throws(() => priceAt('NOPE', 0), RangeError)
  t.same(ticksAt(1_700_000_000).map((tick) => tick.symbol), ['ACME', 'GLOBEX', 'INITECH'], 'one tick per symbol')
  t.equal(ticksAt(1_700_000_000)[0]?.price, priceAt('ACME', 1_700_000_000))
})

t.test('with API_KEY, the REST API needs the x-api-key header', async (t) => {
  const { url, wsUrl } = await start(t, { API_KEY: 's3cret' })
  const list = `${url}/api/connections`

  t.equal((await fetch(list)).status, 401, 'no header')
  t.equal((await fetch(list, { headers: { 'x-api-key': 'wrong' } })).status, 401, 'wrong key')
  t.equal((await fetch(list, { headers: { 'x-api-key': 's3cret-and-more' } })).status, 401, 'key with a matching prefix')
  const allowed = await fetch(list, { headers: { 'x-api-key': 's3cret' } })
  t.equal(allowed.status, 200, 'right key')
  t.match(await allowed.json(), { count: 0 })

  const client = await connect(wsUrl)
  t.teardown(() => client.close())
  const push = await fetch(`${url}/api/connections/broadcast`, {
    method: 'POST',
    headers: { 'x-api-key': 's3cret', 'content-type': 'application/json' },
    body: JSON.stringify({ message: 'from the backend' })
  })
  t.equal(push.status, 200)
  t.match(await push.json(), { recipients: 1 })
  t.match(await client.next('server-broadcast'), { message: 'from the backend' })

  const spec = await (await fetch(`${url}/docs/json`)).json() as { security?: unknown, components?: { securitySchemes?: unknown } }
  t.same(spec.security, [{ apiKey: [] }], 'Swagger UI offers to send the key')
  t.match(spec.components?.securitySchemes, { apiKey: { type: 'apiKey', in: 'header', name: 'x-api-key' } })
})

t.test('without API_KEY, the REST API is open', async (t) => {
  const { url } = await start(t)
  t.equal((await fetch(`${url}/api/connections`)).status, 200)
})

t.test('MAX_CONNECTIONS_PER_IP limits connections per address', async (t) => {
  const { wsUrl } = await start(t, { MAX_CONNECTIONS_PER_IP: '1' })
  const first = await connect(wsUrl)
  t.teardown(() => first.close())
  const second = await handshakeStatus(wsUrl)
  second.socket?.close()
  t.equal(second.status, 429)
})

/** Runs the Docker HEALTHCHECK script against a port; resolves with its exit code. */
function healthcheck (port: number): Promise<number | null> {
  const script = fileURLToPath(new URL('../example/healthcheck.ts', import.meta.url))
  // tap's TypeScript loader runs the .ts script as is.
  const loader = process.execArgv.filter((arg) => arg.includes('@tapjs/typescript'))
  const child = spawn(process.execPath, [...loader, script], { env: { ...process.env, PORT: String(port) }, stdio: 'ignore' })
  return new Promise((resolve, reject) => {
    child.once('error', reject)
    child.once('exit', (code) => resolve(code))
  })
}

t.test('the Docker healthcheck passes on a ready server and fails on a stopped one', async (t) => {
  const { app } = await start(t)
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no address')
  t.equal(await healthcheck(address.port), 0, 'ready')
  await app.close()
  t.equal(await healthcheck(address.port), 1, 'stopped')
})

t.test('readConfig maps the environment to hub options', async (t) => {
  const defaults = readConfig({})
  t.equal(defaults.port, 3000)
  t.equal(defaults.host, 'localhost')
  t.same(defaults.hub, { rest: { auth: false } }, 'in memory, hub defaults, REST API open by explicit choice')

  t.match(readConfig({ PORT: '8080', HOST: '0.0.0.0', LOG_LEVEL: 'warn' }), { port: 8080, host: '0.0.0.0', logLevel: 'warn' })
  t.equal(readConfig({ MAX_CONNECTIONS_PER_IP: '5' }).hub.maxConnectionsPerIp, 5)

  t.same(readConfig({ REDIS_URL: 'redis://redis:6379' }).hub, {
    broker: { type: 'redis', url: 'redis://redis:6379' },
    registry: { type: 'redis', url: 'redis://redis:6379' },
    rest: { auth: false }
  }, 'Redis for both')
  // With KAFKA_BROKERS the hub also gets the price feed's source (its own test below).
  const { sources: _kafkaAlone, ...kafkaAlone } = readConfig({ KAFKA_BROKERS: ' kafka-1:9092, kafka-2:9092 ,' }).hub
  t.same(kafkaAlone, {
    broker: { type: 'kafka', brokers: ['kafka-1:9092', 'kafka-2:9092'] },
    rest: { auth: false }
  }, 'Kafka alone: memory registry')
  const { sources: _both, ...both } = readConfig({ REDIS_URL: 'redis://redis:6379', KAFKA_BROKERS: 'kafka:9092' }).hub
  t.same(both, {
    broker: { type: 'kafka', brokers: ['kafka:9092'] },
    registry: { type: 'redis', url: 'redis://redis:6379' },
    rest: { auth: false }
  }, 'Kafka wins the broker, Redis keeps the registry')
  t.same(readConfig({ REDIS_URL: '', KAFKA_BROKERS: '  ' }).hub, { rest: { auth: false } }, 'blank means unset')

  const withKey = readConfig({ API_KEY: 'k' }).hub.rest
  t.ok(withKey !== undefined && withKey !== false && typeof withKey.auth === 'function', 'API_KEY sets rest.auth')
  t.match(readConfig({}).hub.rest, { auth: false }, 'without API_KEY the API is open by an explicit choice')

  for (const [name, value] of [['PORT', 'http'], ['PORT', '70000'], ['PORT', '1e3'], ['MAX_CONNECTIONS_PER_IP', '0'], ['MAX_CONNECTIONS_PER_IP', '1.5'], ['MAX_CONNECTIONS_PER_IP', '-1'], ['KAFKA_BROKERS', ',']] as const) {
    t.throws(() => readConfig({ [name]: value }), ConfigError, `${name}=${value} is refused`)
  }
  t.throws(() => readConfig({ PORT: 'http' }), { message: /PORT must be an integer from 0 to 65535 \(got "http"\)/ })
})

function kafkaRecord (value: string | null): KafkaSourceRecord {
  return { topic: PRICE_FEED_TOPIC, partition: 0, offset: '0', key: 'ACME', value, headers: {}, timestamp: '0' }
}

t.test('with KAFKA_BROKERS, prices come from the feed through a Kafka source; without, from no source', async (t) => {
  t.equal(readConfig({}).hub.sources, undefined, 'no source: the in-process ticker publishes (tested above)')
  t.equal(readConfig({ REDIS_URL: 'redis://redis:6379' }).hub.sources, undefined, 'Redis alone has no feed either')

  const sources = readConfig({ KAFKA_BROKERS: 'kafka-1:9092,kafka-2:9092' }).hub.sources ?? []
  t.equal(sources.length, 1)
  const [source] = sources
  if (source?.type !== 'kafka') throw new Error(`expected a kafka source, got ${String(source?.type)}`)
  t.match(source, { name: 'price-feed', brokers: ['kafka-1:9092', 'kafka-2:9092'], topics: ['ws-hub-prices'], groupId: 'example-prices' })
  t.equal(source.from, undefined, 'the hub\'s default, latest: a new group starts at the live price')
  t.equal(PRICE_FEED_TOPIC, 'ws-hub-prices')
  t.equal(PRICE_FEED_GROUP, 'example-prices')

  const map = source.map
  if (map === undefined) throw new Error('the source has no map')
  t.same(map(kafkaRecord('{"symbol":"ACME","price":101.5}')), { topic: 'prices', message: { symbol: 'ACME', price: 101.5 } })
  // The hub counts a SyntaxError from map as invalid_json, and checks the
  // message against the topic's schema itself.
  t.throws(() => map(kafkaRecord('{"symbol":')), SyntaxError, 'not JSON: the hub counts it as invalid_json')
  t.same(map(kafkaRecord('{"symbol":"ACME"}')), { topic: 'prices', message: { symbol: 'ACME' } }, 'a wrong shape is left to the topic\'s schema')
  t.equal(map(kafkaRecord(null)), null, 'a tombstone carries no tick')

  t.match(readConfig({ KAFKA_BROKERS: 'k:9092', PRICE_FEED_TOPIC: 'ticks', PRICE_FEED_GROUP: 'g' }).hub.sources, [{ topics: ['ticks'], groupId: 'g' }], 'both can be overridden')
})

t.test('readPriceFeedConfig: where price-feed.ts produces, the same place the app reads', async (t) => {
  t.same(readPriceFeedConfig({ KAFKA_BROKERS: 'kafka:9092' }), { brokers: ['kafka:9092'], topic: PRICE_FEED_TOPIC, group: PRICE_FEED_GROUP })
  t.same(readPriceFeedConfig({ KAFKA_BROKERS: 'a:1, b:2', PRICE_FEED_TOPIC: 'ticks' }).topic, 'ticks')
  t.throws(() => readPriceFeedConfig({}), ConfigError, 'nothing to produce to')
  t.throws(() => readPriceFeedConfig({ KAFKA_BROKERS: ' ' }), ConfigError)
})

// Skipped without KAFKA_BROKERS, except under CI, where that fails.
const brokers = kafkaBrokers(t)

t.test('with KAFKA_BROKERS, a tick produced to the feed\'s topic reaches a subscriber, and no instance ticks by itself', {
  skip: brokers === null ? 'KAFKA_BROKERS is not set; run `bash scripts/kafka.sh start` and export what it prints' : false
}, async (t) => {
  // A topic and a group of this run's own: kafkajs mixes up a group whose
  // members read different topics, and other runs may share the broker.
  const unique = `ws-hub-test-example-prices-${process.pid}-${Date.now()}`
  const env: Env = { KAFKA_BROKERS: (brokers ?? []).join(','), PRICE_FEED_TOPIC: unique, PRICE_FEED_GROUP: unique }
  const kafka = new Kafka({ clientId: 'ws-hub-example-test', brokers: readPriceFeedConfig(env).brokers, logLevel: logLevel.NOTHING })
  const admin = kafka.admin()
  await admin.connect()
  t.teardown(async () => {
    await admin.deleteTopics({ topics: [unique] }).catch(() => {})
    await admin.disconnect()
  })
  // What price-feed.ts does at start; the source waits for a missing topic.
  await admin.createTopics({ topics: [{ topic: unique, numPartitions: 1 }], waitForLeaders: true })
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, allowAutoTopicCreation: false })
  await producer.connect()
  t.teardown(() => producer.disconnect())
  const produce = (value: string): Promise<unknown> => producer.send({ topic: unique, messages: [{ key: 'TEST', value }] })

  const { app, wsUrl } = await start(t, env)
  const client = await connect(wsUrl)
  t.teardown(() => client.close())
  client.send({ type: 'subscribe', topic: 'prices', id: 1 })
  t.equal((await client.next('ack')).id, 1)

  // The group is new and starts at the latest offset: a tick produced before
  // it has joined is never read. So one goes out every half second until
  // one comes back, within a deadline.
  const symbol = `TEST-${process.pid}`
  const seen: Frame[] = []
  const deadline = Date.now() + 60_000
  while (seen.length === 0) {
    if (Date.now() > deadline) throw new Error('no tick came through the source within 60 s')
    await produce(JSON.stringify({ symbol, price: 101.5 }))
    const frame = await client.next('publish', 500).catch(() => undefined)
    if (frame !== undefined) seen.push(frame)
  }
  t.match(seen[0], { topic: 'prices', from: 'server', message: { symbol, price: 101.5 } })

  // One partition keeps order: once the tick after it is here, the bad
  // record was handled. It is counted when its whole batch has settled,
  // which can be a moment after the tick reached the client.
  await produce('{"symbol":')
  await produce(JSON.stringify({ symbol, price: 102 }))
  const priceOf = (frame: Frame | undefined): unknown => (frame?.message as { price?: unknown } | undefined)?.price
  while (priceOf(seen.at(-1)) !== 102) seen.push(await client.next('publish', 30_000))
  const status = (): SourceStatus | undefined => app.wsHub.stats().sources[0]
  await until(() => status()?.skipped.invalid_json === 1, 10_000, 'the record that is not JSON counted as invalid_json')
  t.match(status(), { name: 'price-feed', type: 'kafka', state: 'up' })

  // Every tick was ours: the instance ran no ticker of its own.
  const others = [...seen, ...client.frames].filter((frame) => frame.type === 'publish' && (frame.message as { symbol?: unknown }).symbol !== symbol)
  t.same(others, [], 'no tick but the feed\'s')
})

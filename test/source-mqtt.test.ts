/**
 * The MQTT source against a real MQTT 5 broker (Mosquitto): the shared
 * source suite, then what is MQTT's own (dead letters with their user
 * properties, a dead-letter topic the source would read, an `ordered`
 * source's lease moving on close and on expiry, a shared subscription read
 * once across two consumers, QoS 2). Skipped when nothing answers at
 * MQTT_URL (default mqtt://127.0.0.1:1883).
 */
import { connect as connectTcp, createServer, type AddressInfo, type Socket } from 'node:net'
import t from 'tap'
import { connectAsync, type IPublishPacket, type MqttClient } from 'mqtt'
import { normalizeSources, type MqttSourceConfig } from '../lib/options/source-options.js'
import { MemoryLease } from '../lib/sources/leases/memory-lease.js'
import { MqttSource } from '../lib/sources/mqtt/mqtt-source.js'
import { SourceRunner } from '../lib/sources/source-runner.js'
import type { SourceContext } from '../lib/sources/source.js'
import { FakePublisher, sourceSuite, uniqueName, quietLogger } from '../lib/testing/source-suite.js'
import { answers, mqttUrl } from './helpers/services.js'
import { record, range } from './helpers/source-records.js'
import { until } from './helpers.js'

const url = mqttUrl()

/** A lease factory that keeps what it made, so a test can expire one. */
function leases (): { factory: (key: string) => MemoryLease, made: MemoryLease[] } {
  const made: MemoryLease[] = []
  return { made, factory: (key) => { const lease = new MemoryLease(key); made.push(lease); return lease } }
}

const context = (instanceId: string, name = 'mqtt', lease: (key: string) => MemoryLease = (key) => new MemoryLease(key)): SourceContext =>
  ({ instanceId, name, log: quietLogger, lease })

function sourceConfig (filter: string, extra: Record<string, unknown> = {}): MqttSourceConfig {
  const [config] = normalizeSources([{ type: 'mqtt', url, subscriptions: [filter], ...extra }])
  if (config?.type !== 'mqtt') throw new Error('not an mqtt source')
  return config
}

function runner (consumer: MqttSource, publisher: FakePublisher, name = 'mqtt'): SourceRunner {
  return new SourceRunner({ name, type: 'mqtt', consumer, publisher, log: quietLogger, retryMs: 50, maxRetryMs: 200, lagIntervalMs: 200 })
}

async function main (): Promise<void> {
  if (!await answers(url)) {
    t.test('mqtt source tests', { skip: `nothing answers at ${url}; set MQTT_URL to an MQTT 5 broker` }, async () => {})
    return
  }
  // Publishes as a separate client, at QoS 1, each PUBACK awaited: the
  // broker has the message (and has queued it for the subscribers) when
  // `produce` resolves.
  const producer = await connectAsync(url, { protocolVersion: 5, clientId: uniqueName('ws-hub-test-producer') })
  t.teardown(async () => { await producer.endAsync() })
  const produce = async (topic: string, texts: readonly string[]): Promise<void> => {
    for (const text of texts) await producer.publishAsync(topic, text, { qos: 1 })
  }
  const place = (): string => `ws-hub-test/${uniqueName('place')}`
  /** Produces probes until one is published: the source has subscribed and reads. */
  const reading = async (topic: string, publisher: FakePublisher): Promise<void> => {
    const deadline = Date.now() + 10_000
    while (!publisher.published.some((p) => p.n === -1)) {
      if (Date.now() > deadline) throw new Error('the source did not start reading')
      await produce(topic, [record(-1)])
      await publisher.waitFor(publisher.published.length + 1, 200).catch(() => {})
    }
    publisher.published.length = 0
  }

  await sourceSuite(t, 'mqtt', {
    place: async () => place(),
    consumer: (place, { instanceId, group }) => new MqttSource(sourceConfig(`${place}/#`, {
      group: group.replace(/[/+#]/g, '_'),
      // The same instance coming back is the same client id resuming its
      // session: what it had not acknowledged is sent to it again.
      clientId: `ws-hub-test-${instanceId}`,
      sessionExpirySec: 60,
      reconnectMs: 200
    }), context(instanceId)),
    produce: async (place, texts) => { await produce(`${place}/events`, texts) },
    // A packet id is reused: only a `map` that reads an id from the payload gives keys.
    keyed: false,
    timeoutMs: 10_000
  })

  t.test('a poison packet goes to the dead-letter topic, with its reason and topic in user properties', async (t) => {
    const at = place()
    const deadTopic = `ws-hub-test-dead/${uniqueName('dead')}`
    const watcher = await subscriber(deadTopic)
    t.teardown(async () => { await watcher.client.endAsync() })
    const publisher = new FakePublisher()
    const run = runner(new MqttSource(sourceConfig(`${at}/#`, { deadLetter: { topic: deadTopic } }), context(uniqueName('i'))), publisher)
    await run.start()
    t.teardown(async () => { await run.close() })
    await producer.publishAsync(`${at}/in`, '{poison', { qos: 1, properties: { userProperties: { origin: 'sensor-7' } } })
    await produce(`${at}/in`, [record(1)])
    await publisher.waitFor(1, 10_000)
    await until(() => watcher.packets.length > 0, 10_000, 'the dead letter')
    const [dead] = watcher.packets
    t.equal(dead?.payload.toString(), '{poison', 'the payload as it was read')
    t.same(dead?.properties?.userProperties, { origin: 'sensor-7', 'ws-hub-reason': 'invalid_json', 'ws-hub-source-topic': `${at}/in` })
    t.same(publisher.published.map((p) => p.n), [1], 'the packet after it flowed')
    t.equal(run.status().deadLettered, 1)
    t.equal(run.status().skipped.invalid_json, 0, 'dead-lettered, not skipped')
  })

  t.test('a dead letter nobody subscribed to is refused: the source holds the record until someone takes it', async (t) => {
    const at = place()
    const deadTopic = `ws-hub-test-dead/${uniqueName('nobody')}`
    const publisher = new FakePublisher()
    const run = runner(new MqttSource(sourceConfig(`${at}/#`, { deadLetter: { topic: deadTopic } }), context(uniqueName('i'))), publisher)
    await run.start()
    t.teardown(async () => { await run.close() })
    await produce(`${at}/in`, ['{poison', record(1)])
    await until(() => run.status().state === 'paused', 10_000, 'the source to hold the poison packet')
    t.equal(publisher.published.length, 0, 'nothing after it went out of order')
    const watcher = await subscriber(deadTopic)
    t.teardown(async () => { await watcher.client.endAsync() })
    await publisher.waitFor(1, 10_000)
    // The broker acknowledged the dead letter before it reaches the watcher.
    await until(() => watcher.packets.length > 0, 10_000, 'the dead letter')
    t.equal(watcher.packets[0]?.payload.toString(), '{poison', 'dead-lettered once someone listens')
    t.same(publisher.published.map((p) => p.n), [1])
  })

  t.test('a dead-letter topic the source\'s own filters match is refused at construction', async (t) => {
    t.throws(() => new MqttSource(sourceConfig('events/#', { deadLetter: { topic: 'events/dead' } }), context('i')), { code: 'WS_HUB_INVALID_OPTION' })
    t.throws(() => new MqttSource(sourceConfig('+/in', { deadLetter: { topic: 'dead/in' } }), context('i')), { code: 'WS_HUB_INVALID_OPTION' })
    t.doesNotThrow(() => new MqttSource(sourceConfig('events/+', { deadLetter: { topic: 'events/dead/letters' } }), context('i')))
  })

  t.test('a shared subscription across two consumers: each packet is read once', async (t) => {
    const at = place()
    const group = uniqueName('g')
    const a = new FakePublisher()
    const b = new FakePublisher()
    const runA = runner(new MqttSource(sourceConfig(`${at}/#`, { group }), context(uniqueName('a'))), a)
    const runB = runner(new MqttSource(sourceConfig(`${at}/#`, { group }), context(uniqueName('b'))), b)
    await runA.start()
    await runB.start()
    t.teardown(async () => { await runA.close(); await runB.close() })
    await produce(`${at}/x`, range(0, 50).map((n) => record(n)))
    await until(() => a.published.length + b.published.length >= 50, 10_000, '50 publications')
    await produce(`${at}/x`, [record(50)])
    await until(() => a.published.length + b.published.length >= 51, 10_000, 'a sentinel after them')
    const all = [...a.published, ...b.published].map((p) => p.n).sort((x, y) => x - y)
    t.same(all, range(0, 51), 'each once, none twice')
    t.ok(a.published.length > 0 && b.published.length > 0, 'both consumers read a share')
  })

  t.test('ordered: one of two instances reads; the lease moves when the holder closes, then when it expires', async (t) => {
    const at = place()
    const group = uniqueName('g')
    const made = leases()
    const config = sourceConfig(`${at}/#`, { group, ordered: true, sessionExpirySec: 60, reconnectMs: 200 })
    const pubs = [new FakePublisher(), new FakePublisher(), new FakePublisher()]
    const sources = pubs.map((_, i) => new MqttSource(config, context(`instance-${i}`, 'ordered', made.factory)))
    const runs = sources.map((source, i) => runner(source, pubs[i] as FakePublisher, 'ordered'))
    for (const run of runs) await run.start()
    t.teardown(async () => { for (const run of runs) await run.close() })
    const holder = async (): Promise<number> => {
      await until(() => sources.filter((s) => s.active()).length === 1, 10_000, 'one holder')
      return sources.findIndex((s) => s.active())
    }
    const first = await holder()
    t.equal(sources.filter((s) => s.active()).length, 1, 'one instance reads')
    t.ok(runs.every((run) => run.state() === 'up'), 'the standbys are up, not down')
    t.same(runs.map((run) => run.status().active), sources.map((s) => s.active()), 'status says which is active')

    await reading(`${at}/x`, pubs[first] as FakePublisher)
    await produce(`${at}/x`, range(0, 30).map((n) => record(n)))
    await (pubs[first] as FakePublisher).waitFor(30, 10_000)
    t.same(pubs[first]?.published.map((p) => p.n), range(0, 30), 'the holder reads all, in order')

    await runs[first]?.close()
    await produce(`${at}/x`, range(30, 40).map((n) => record(n)))
    const second = await holder()
    t.not(second, first, 'another instance took the lease')
    await (pubs[second] as FakePublisher).waitFor(10, 10_000)
    // The group's session moved with the lease: what was published while
    // nobody held it was queued for it.
    t.same(pubs[second]?.published.map((p) => p.n), range(30, 40), 'it reads on from where the first stopped, nothing lost')

    // An expired lease is free: any instance may take it, the one it
    // expired under too (it competes like the others).
    made.made.find((lease) => lease.held())?.expire()
    t.notOk(sources[second]?.active(), 'the holder stops at once when its lease expires')
    const third = await holder()
    t.not(third, first, 'the closed instance does not come back')
    await reading(`${at}/x`, pubs[third] as FakePublisher)
    await produce(`${at}/x`, range(40, 45).map((n) => record(n)))
    const next = pubs[third] as FakePublisher
    await next.waitFor(5, 10_000)
    t.same(next.published.map((p) => p.n), range(40, 45), 'the new holder reads on in order')
  })

  t.test('qos 2: a message refused before a close is not PUBREC\'d, and comes back', async (t) => {
    const at = place()
    const instanceId = uniqueName('q2')
    const config = sourceConfig(`${at}/#`, { qos: 2, clientId: `ws-hub-test-${instanceId}`, sessionExpirySec: 60 })
    const first = new FakePublisher()
    const run = runner(new MqttSource(config, context(instanceId)), first)
    await run.start()
    first.down = true
    for (const n of range(0, 3)) await producer.publishAsync(`${at}/x`, record(n), { qos: 2 })
    await until(() => run.status().state === 'paused', 10_000, 'the source to pause')
    await run.close()
    const second = new FakePublisher()
    const again = runner(new MqttSource(config, context(instanceId)), second)
    await again.start()
    t.teardown(async () => { await again.close() })
    await second.waitFor(3, 10_000)
    t.same(second.firsts(), range(0, 3), 'every refused message came back, in order')
  })

  t.test('a dropped connection: down, then up again by itself; what was held unacknowledged comes back', async (t) => {
    const proxy = await tcpProxy(new URL(url))
    t.teardown(async () => { await proxy.close() })
    const at = place()
    const instanceId = uniqueName('drop')
    const config = sourceConfig(`${at}/#`, { url: proxy.url, clientId: `ws-hub-test-${instanceId}`, sessionExpirySec: 60, reconnectMs: 100 })
    const publisher = new FakePublisher()
    const run = runner(new MqttSource(config, context(instanceId)), publisher)
    await run.start()
    t.teardown(async () => { await run.close() })
    await reading(`${at}/x`, publisher)
    publisher.down = true
    await produce(`${at}/x`, range(0, 3).map((n) => record(n)))
    await until(() => run.status().state === 'paused', 10_000, 'the source to pause')
    proxy.cut()
    await until(() => run.state() === 'down', 10_000, 'the source to see the connection drop')
    publisher.down = false
    await publisher.waitFor(3, 10_000)
    t.same(publisher.firsts(), range(0, 3), 'the held message and those after it, in order')
    await until(() => run.state() === 'up', 10_000, 'the source to be up')
    await produce(`${at}/x`, [record(3)])
    await until(() => publisher.firsts().includes(3), 10_000, 'a message after the reconnect')
    t.same(publisher.firsts(), range(0, 4), 'nothing lost')
  })

  t.test('close is safe before start, twice, and while the broker cannot be reached', async (t) => {
    const never = new MqttSource(sourceConfig('x/#'), context('i'))
    await never.close()
    const publisher = new FakePublisher()
    const unreachable = runner(new MqttSource(sourceConfig('x/#', { url: 'mqtt://127.0.0.1:1', reconnectMs: 100 }), context(uniqueName('i'))), publisher)
    await unreachable.start()
    t.equal(unreachable.state(), 'down', 'down, not thrown')
    await Promise.all([unreachable.close(), unreachable.close()])
    t.pass('closed')
  })
}

/** A TCP proxy to the broker whose connections the test can cut, as a network failure would. */
async function tcpProxy (target: URL): Promise<{ url: string, cut: () => void, close: () => Promise<void> }> {
  const sockets = new Set<Socket>()
  const server = createServer((socket) => {
    const upstream = connectTcp(Number(target.port === '' ? 1883 : target.port), target.hostname)
    for (const end of [socket, upstream]) {
      sockets.add(end)
      end.on('error', () => {})
      end.on('close', () => { sockets.delete(end); socket.destroy(); upstream.destroy() })
    }
    socket.pipe(upstream).pipe(socket)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  const cut = (): void => { for (const socket of sockets) socket.destroy() }
  return {
    url: `mqtt://127.0.0.1:${port}`,
    cut,
    close: async () => {
      cut()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}

/** A separate client subscribed to `topic`, keeping what it receives. */
async function subscriber (topic: string): Promise<{ client: MqttClient, packets: IPublishPacket[] }> {
  const client = await connectAsync(url, { protocolVersion: 5, clientId: uniqueName('ws-hub-test-watcher') })
  const packets: IPublishPacket[] = []
  client.on('message', (_topic, _payload, packet) => { packets.push(packet) })
  await client.subscribeAsync(topic, { qos: 1 })
  return { client, packets }
}

await main()

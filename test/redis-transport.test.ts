import t, { type Test as Tap } from 'tap'
import { Redis } from 'ioredis'
import { RedisBroker, BrokerError } from '../lib/cluster/redis/redis-transport.js'
import type { Envelope } from '../lib/cluster/envelope.js'
import { OptionsError } from '../lib/options/hub-options.js'
import { brokerSuite } from '../lib/testing/transport-suite.js'
import { until } from './helpers.js'
import {
  LEVEL, PrivateRedis, freePort, plainClient, recordingLogger, needsRedisServer, redisUrl, uniquePrefix
} from './helpers/redis-server.js'

const url = redisUrl(t)

class Inbox {
  readonly received: Envelope[] = []
  readonly handler = (envelope: Envelope): void => { this.received.push(envelope) }

  async waitFor (count: number, what: string, timeoutMs = 5000): Promise<Envelope[]> {
    await until(() => this.received.length >= count, timeoutMs, `${count} envelopes (${what}); have ${this.received.length}`)
    return this.received
  }

  frames (): string[] {
    return this.received.map((e) => e.frame)
  }
}

if (url !== null) {
  const { log: quiet } = recordingLogger()

  // The suite needs every broker of a test on one prefix; subtests run one
  // after another and close their brokers, so a prefix per file suffices.
  const suitePrefix = uniquePrefix('suite')
  brokerSuite(t, 'redis broker (url)', {
    create: () => new RedisBroker({ type: 'redis', url, channelPrefix: suitePrefix }, quiet)
  })

  t.test('redis broker (user client): runs the suite on duplicates and never closes the client', async (t) => {
    const client = plainClient(t, url)
    const prefix = uniquePrefix('suite-client')
    const created: RedisBroker[] = []
    t.test('suite', async (t) => {
      brokerSuite(t, 'redis broker (client)', {
        create: () => {
          const broker = new RedisBroker({ type: 'redis', client, channelPrefix: prefix }, quiet)
          created.push(broker)
          return broker
        }
      })
    })
    await t.test('the client is still open', async (t) => {
      t.ok(created.length >= 5, 'the suite built brokers from the client')
      t.equal(client.status, 'ready')
      t.equal(await client.ping(), 'PONG')
    })
  })

  const envelope = (origin: string, n: number, target: Envelope['target'] = { kind: 'all' }): Envelope =>
    ({ origin, target, frame: JSON.stringify({ type: 'message', n }) })

  async function started (t: Tap, options: { url: string, prefix: string, id: string, log?: ReturnType<typeof recordingLogger>['log'] }): Promise<{ broker: RedisBroker, inbox: Inbox }> {
    const broker = new RedisBroker({ type: 'redis', url: options.url, channelPrefix: options.prefix }, options.log ?? quiet)
    t.teardown(() => broker.close())
    const inbox = new Inbox()
    await broker.start(options.id, inbox.handler)
    return { broker, inbox }
  }

  t.test('options need exactly one of url and client', async (t) => {
    t.throws(() => new RedisBroker({ type: 'redis' }, quiet), OptionsError)
    t.throws(() => new RedisBroker({ type: 'redis', url, client: new Redis({ lazyConnect: true }) }, quiet), /exactly one of "url" or "client" \(got both\)/)
  })

  t.test('start resolves after Redis confirmed both subscriptions', async (t) => {
    const prefix = uniquePrefix('confirm')
    const admin = plainClient(t, url)
    const { broker } = await started(t, { url, prefix, id: 'x' })
    // Read right after start resolved, with no wait: the server already counts them.
    const counts = await admin.pubsub('NUMSUB', `${prefix}all`, `${prefix}inst:x`)
    t.same(counts, [`${prefix}all`, 1, `${prefix}inst:x`, 1])
    t.equal(broker.state(), 'up')
  })

  t.test('state is down before start and after close; publish rejects then', async (t) => {
    const broker = new RedisBroker({ type: 'redis', url, channelPrefix: uniquePrefix('states') }, quiet)
    t.equal(broker.state(), 'down')
    await t.rejects(broker.publish(envelope('a', 1)), /before start/)
    await broker.start('a', () => {})
    t.equal(broker.state(), 'up')
    await broker.close()
    t.equal(broker.state(), 'down')
    await t.rejects(broker.publish(envelope('a', 1)), BrokerError)
    await t.rejects(broker.start('a', () => {}), /after close/)
  })

  t.test('close ends both connections it opened, and nothing else', async (t) => {
    const admin = plainClient(t, url)
    const user = plainClient(t, url)
    const prefix = uniquePrefix('close')
    const id = `close-${process.pid}-${Date.now()}`
    const names = async (): Promise<string[]> => {
      const list = await admin.client('LIST') as string
      return list.split('\n').map((line) => /\bname=(\S*)/.exec(line)?.[1] ?? '').filter((name) => name.endsWith(id)).sort()
    }
    const fromUrl = new RedisBroker({ type: 'redis', url, channelPrefix: prefix }, quiet)
    const fromClient = new RedisBroker({ type: 'redis', client: user, channelPrefix: prefix }, quiet)
    await fromUrl.start(`url-${id}`, () => {})
    await fromClient.start(`client-${id}`, () => {})
    t.same(await names(), [
      `ws-hub:broker:pub:client-${id}`, `ws-hub:broker:pub:url-${id}`,
      `ws-hub:broker:sub:client-${id}`, `ws-hub:broker:sub:url-${id}`
    ])
    await fromUrl.close()
    await fromClient.close()
    await fromClient.close()
    await until(async () => (await names()).length === 0, 2000, 'the broker connections to be gone')
    t.equal(user.status, 'ready', 'the user client is still open')
    t.equal(await user.ping(), 'PONG')
  })

  t.test('an envelope for an instance listed twice arrives once', async (t) => {
    const prefix = uniquePrefix('dedupe')
    const a = await started(t, { url, prefix, id: 'a' })
    const b = await started(t, { url, prefix, id: 'b' })
    await a.broker.publish(envelope('a', 1, { kind: 'client', id: 'c' }), { instances: ['b', 'b'] })
    await a.broker.publish(envelope('a', 2), { instances: [] })
    // Same connection, same order: once 3 is in, any copy of 1 would be too.
    await a.broker.publish(envelope('a', 3))
    await b.inbox.waitFor(2, 'the direct one and the marker')
    t.same(b.inbox.received.map((e) => JSON.parse(e.frame).n), [1, 3])
  })

  t.test('malformed messages on the channel are logged and dropped; a throwing handler is logged', async (t) => {
    const prefix = uniquePrefix('malformed')
    const admin = plainClient(t, url)
    const { log, lines } = recordingLogger()
    const received: Envelope[] = []
    const broker = new RedisBroker({ type: 'redis', url, channelPrefix: prefix }, log)
    t.teardown(() => broker.close())
    await broker.start('b', (envelope) => {
      received.push(envelope)
      if (envelope.frame === 'boom') throw new Error('handler exploded')
    })
    for (const junk of ['no header line', '{not json\n{}', '{"o":1,"t":{"kind":"all"}}\n{}', '{"o":"x","t":{"kind":"nope"}}\n{}']) {
      await admin.publish(`${prefix}all`, junk)
    }
    await admin.publish(`${prefix}all`, '{"o":"x","t":{"kind":"all"}}\nboom')
    await admin.publish(`${prefix}inst:b`, '{"o":"x","t":{"kind":"client","id":"c"}}\n{"ok":true}')
    await until(() => received.length === 2, 5000, 'the two valid envelopes')
    t.same(received.map((e) => e.frame), ['boom', '{"ok":true}'])
    const warned = lines.filter((l) => l.level === LEVEL.warn && l.msg.includes('malformed envelope'))
    t.equal(warned.length, 4, 'each malformed message logged once')
    t.equal(warned[0]?.channel, `${prefix}all`)
    t.ok(warned.every((l) => typeof l.err?.message === 'string'), 'with the decode error')
    const failed = lines.filter((l) => l.level === LEVEL.error && l.err?.message === 'handler exploded')
    t.equal(failed.length, 1)
    t.equal(broker.state(), 'up')
  })

  t.test('the frame is carried byte for byte', async (t) => {
    const prefix = uniquePrefix('bytes')
    const a = await started(t, { url, prefix, id: 'a' })
    const b = await started(t, { url, prefix, id: 'b' })
    const frame = '{"type":"message","text":"line\\nbreak \u2028 emoji \ud83d\ude00 \\u0000",  "spaced" : 1 }\n second line'
    await a.broker.publish({ origin: 'a', target: { kind: 'topic', topic: 'x\ny' }, frame })
    const [got] = await b.inbox.waitFor(1, 'the frame')
    t.equal(got?.frame, frame)
    t.same(got?.target, { kind: 'topic', topic: 'x\ny' })
  })

  t.test('start rejects with context when Redis is unreachable, and leaves nothing running', async (t) => {
    const port = await freePort()
    const broker = new RedisBroker({ type: 'redis', url: `redis://127.0.0.1:${port}`, channelPrefix: 'x:' }, quiet)
    const began = Date.now()
    await t.rejects(broker.start('a', () => {}), { name: 'BrokerError', message: new RegExp(`127\\.0\\.0\\.1:${port}`) })
    t.ok(Date.now() - began < 3000, 'fails fast')
    t.equal(broker.state(), 'down')
    // A reconnect loop left behind would keep this file from ever exiting.
    await broker.close()
  })

  t.test('Redis outage: down and failing fast, then up again by itself, no duplicates', { skip: needsRedisServer() }, async (t) => {
    const server = await PrivateRedis.start(t)
    const prefix = uniquePrefix('fault')
    const logA = recordingLogger()
    const a = await started(t, { url: server.url, prefix, id: 'a', log: logA.log })
    const b = await started(t, { url: server.url, prefix, id: 'b' })

    await a.broker.publish(envelope('a', 1))
    await b.inbox.waitFor(1, 'before the outage')

    await server.stop()
    await until(() => a.broker.state() === 'down' && b.broker.state() === 'down', 3000, 'both brokers to report down')
    const began = Date.now()
    await t.rejects(a.broker.publish(envelope('a', 2)), { name: 'BrokerError', message: /unreachable/ })
    await t.rejects(a.broker.publish(envelope('a', 3), { instances: ['b'] }), BrokerError)
    t.ok(Date.now() - began < 2000, `publish rejected in ${Date.now() - began} ms`)

    await server.start()
    await until(() => a.broker.state() === 'up' && b.broker.state() === 'up', 10_000, 'both brokers to come back up')
    for (let n = 4; n <= 8; n++) await a.broker.publish(envelope('a', n))
    await a.broker.publish(envelope('a', 9, { kind: 'client', id: 'c' }), { instances: ['b'] })
    await b.inbox.waitFor(7, 'after the restart')
    // One more round trip through Redis: a duplicate would have arrived by now.
    await a.broker.publish(envelope('a', 10))
    await b.inbox.waitFor(8, 'the final marker')
    t.same(b.inbox.received.map((e) => JSON.parse(e.frame).n), [1, 4, 5, 6, 7, 8, 9, 10],
      'nothing queued from the outage, nothing twice')
    t.equal(a.inbox.received.length, 0, 'a never received its own envelopes')

    const changes = logA.lines.filter((l) => l.msg.startsWith('ws-hub: Redis broker'))
    t.same(changes.map((l) => [l.level, l.msg === 'ws-hub: Redis broker up' ? 'up' : 'down']),
      [[LEVEL.info, 'up'], [LEVEL.warn, 'down'], [LEVEL.info, 'up']], 'each state change logged once')
    t.ok(changes[1]?.err !== undefined, 'the down warning carries the error')
  })
}

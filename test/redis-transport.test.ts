import t, { type Test as Tap } from 'tap'
import { Redis } from 'ioredis'
import { RedisTransport } from '../lib/cluster/redis/redis-transport.js'
import { encodeEnvelope, type DeliverEnvelope, type Envelope, type Target } from '../lib/cluster/envelope.js'
import { HubErrorCodes, OptionsError, TransportError } from '../lib/errors.js'
import { transportSuite } from '../lib/testing/transport-suite.js'
import {
  LEVEL, PrivateRedis, freePort, plainClient, recordingLogger, needsRedisServer, redisUrl, uniquePrefix
} from './helpers/redis-server.js'

const url = redisUrl(t)

// Not from ./helpers.js: that loads the whole hub, and these tests need only the transport.
async function until (condition: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

class Inbox {
  readonly received: Envelope[] = []
  readonly handler = (envelope: Envelope): void => { this.received.push(envelope) }

  async waitFor (count: number, what: string, timeoutMs = 5000): Promise<Envelope[]> {
    await until(() => this.received.length >= count, timeoutMs, `${count} envelopes (${what}); have ${this.received.length}`)
    return this.received
  }

  frames (): string[] {
    return this.received.map((e) => e.type === 'deliver' ? e.frame : `(${e.type})`)
  }

  numbers (): number[] {
    return this.frames().map((frame) => (JSON.parse(frame) as { n: number }).n)
  }
}

if (url !== null) {
  const { log: quiet } = recordingLogger()

  // The suite needs every transport of a test on one prefix; subtests run one
  // after another and close their transports, so a prefix per file suffices.
  const suitePrefix = uniquePrefix('suite')
  transportSuite(t, 'redis transport (url)', {
    create: () => new RedisTransport({ url, channelPrefix: suitePrefix }, quiet)
  })

  t.test('redis transport (user client): runs the suite on duplicates and never closes the client', async (t) => {
    const client = plainClient(t, url)
    const prefix = uniquePrefix('suite-client')
    const created: RedisTransport[] = []
    t.test('suite', async (t) => {
      transportSuite(t, 'redis transport (client)', {
        create: () => {
          const transport = new RedisTransport({ client, channelPrefix: prefix }, quiet)
          created.push(transport)
          return transport
        }
      })
    })
    await t.test('the client is still open', async (t) => {
      t.ok(created.length >= 5, 'the suite built transports from the client')
      t.equal(client.status, 'ready')
      t.equal(await client.ping(), 'PONG')
    })
  })

  const envelope = (origin: string, n: number, target: Target = { kind: 'all' }): DeliverEnvelope =>
    ({ type: 'deliver', origin, target, frame: JSON.stringify({ type: 'message', n }) })

  async function started (t: Tap, options: { url: string, prefix: string, id: string, log?: ReturnType<typeof recordingLogger>['log'] }): Promise<{ transport: RedisTransport, inbox: Inbox }> {
    const transport = new RedisTransport({ url: options.url, channelPrefix: options.prefix }, options.log ?? quiet)
    t.teardown(() => transport.close())
    const inbox = new Inbox()
    await transport.start(options.id, inbox.handler)
    return { transport, inbox }
  }

  t.test('options need exactly one of url, client and cluster', async (t) => {
    t.throws(() => new RedisTransport({}, quiet), OptionsError)
    t.throws(() => new RedisTransport({ url, client: new Redis({ lazyConnect: true }) }, quiet), /exactly one of "url", "client" or "cluster" \(got url and client\)/)
  })

  t.test('start resolves after Redis confirmed both subscriptions', async (t) => {
    const prefix = uniquePrefix('confirm')
    const admin = plainClient(t, url)
    const { transport } = await started(t, { url, prefix, id: 'x' })
    // Read right after start resolved, with no wait: the server already counts them.
    const counts = await admin.pubsub('NUMSUB', `${prefix}all`, `${prefix}inst:x`)
    t.same(counts, [`${prefix}all`, 1, `${prefix}inst:x`, 1])
    t.equal(transport.state(), 'up')
  })

  t.test('state is down before start and after close; publish rejects then', async (t) => {
    const transport = new RedisTransport({ url, channelPrefix: uniquePrefix('states') }, quiet)
    t.equal(transport.state(), 'down')
    await t.rejects(transport.publish(envelope('a', 1)), /before start/)
    await transport.start('a', () => {})
    t.equal(transport.state(), 'up')
    await transport.close()
    t.equal(transport.state(), 'down')
    await t.rejects(transport.publish(envelope('a', 1)), TransportError)
    await t.rejects(transport.start('a', () => {}), /after close/)
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
    const fromUrl = new RedisTransport({ url, channelPrefix: prefix }, quiet)
    const fromClient = new RedisTransport({ client: user, channelPrefix: prefix }, quiet)
    await fromUrl.start(`url-${id}`, () => {})
    await fromClient.start(`client-${id}`, () => {})
    t.same(await names(), [
      `ws-hub:transport:pub:client-${id}`, `ws-hub:transport:pub:url-${id}`,
      `ws-hub:transport:sub:client-${id}`, `ws-hub:transport:sub:url-${id}`
    ])
    await fromUrl.close()
    await fromClient.close()
    await fromClient.close()
    await until(async () => (await names()).length === 0, 2000, 'the transport connections to be gone')
    t.equal(user.status, 'ready', 'the user client is still open')
    t.equal(await user.ping(), 'PONG')
  })

  t.test('an envelope for an instance listed twice arrives once', async (t) => {
    const prefix = uniquePrefix('dedupe')
    const a = await started(t, { url, prefix, id: 'a' })
    const b = await started(t, { url, prefix, id: 'b' })
    await a.transport.publish(envelope('a', 1, { kind: 'client', id: 'c' }), ['b', 'b'])
    await a.transport.publish(envelope('a', 2), [])
    // Same connection, same order: once 3 is in, any copy of 1 would be too.
    await a.transport.publish(envelope('a', 3))
    await b.inbox.waitFor(2, 'the direct one and the marker')
    t.same(b.inbox.numbers(), [1, 3])
  })

  t.test('topics: one channel each, subscribed and unsubscribed with Redis confirming before the call resolves', async (t) => {
    const prefix = uniquePrefix('topics')
    const admin = plainClient(t, url)
    const a = await started(t, { url, prefix, id: 'a' })
    const b = await started(t, { url, prefix, id: 'b' })
    const channel = `${prefix}topic:news ✓`
    t.same(await admin.pubsub('NUMSUB', channel), [channel, 0])
    await b.transport.subscribe('news ✓')
    // Read right after subscribe resolved, with no wait: the server already counts it.
    t.same(await admin.pubsub('NUMSUB', channel), [channel, 1])
    // A topic envelope goes to the topic's channel only: `all` readers without interest never see it.
    await a.transport.publish(envelope('a', 1, { kind: 'topic', topic: 'news ✓' }))
    await b.inbox.waitFor(1, 'the topic envelope')
    await b.transport.unsubscribe('news ✓')
    t.same(await admin.pubsub('NUMSUB', channel), [channel, 0])
    t.equal(b.transport.state(), 'up')
  })

  t.test('malformed messages on the channel are logged and dropped; a throwing handler is logged', async (t) => {
    const prefix = uniquePrefix('malformed')
    const admin = plainClient(t, url)
    const { log, lines } = recordingLogger()
    const received: Envelope[] = []
    const transport = new RedisTransport({ url, channelPrefix: prefix }, log)
    t.teardown(() => transport.close())
    await transport.start('b', (envelope) => {
      received.push(envelope)
      if (envelope.type === 'deliver' && envelope.frame === 'boom') throw new Error('handler exploded')
    })
    const junk = [
      'no header line',
      '{not json\n{}',
      '{"y":"deliver","o":1,"t":{"kind":"all"}}\n{}',
      '{"y":"deliver","o":"x","t":{"kind":"nope"}}\n{}',
      '{"type":"close","origin":"x","target":{"kind":"all"},"code":4000,"reason":""}',
      '{"type":"launch","origin":"x"}'
    ]
    for (const text of junk) await admin.publish(`${prefix}all`, text)
    await admin.publish(`${prefix}all`, encodeEnvelope(envelope('x', 0), 1).replace(/\n.*$/s, '\nboom'))
    await admin.publish(`${prefix}inst:b`, encodeEnvelope({ type: 'query', origin: 'x', requestId: 'r', clientIds: ['c'], sentAt: 2 }))
    await until(() => received.length === 2, 5000, 'the two valid envelopes')
    t.same(received, [
      { type: 'deliver', origin: 'x', target: { kind: 'all' }, frame: 'boom', sentAt: 1 },
      { type: 'query', origin: 'x', requestId: 'r', clientIds: ['c'], sentAt: 2 }
    ])
    const warned = lines.filter((l) => l.level === LEVEL.warn && l.msg.includes('malformed envelope'))
    t.equal(warned.length, junk.length, 'each malformed message logged once')
    t.equal(warned[0]?.channel, `${prefix}all`)
    t.ok(warned.every((l) => typeof l.err?.message === 'string'), 'with the decode error')
    const failed = lines.filter((l) => l.level === LEVEL.error && l.err?.message === 'handler exploded')
    t.equal(failed.length, 1)
    t.equal(transport.state(), 'up')
  })

  t.test('the frame is carried byte for byte', async (t) => {
    const prefix = uniquePrefix('bytes')
    const a = await started(t, { url, prefix, id: 'a' })
    const b = await started(t, { url, prefix, id: 'b' })
    await b.transport.subscribe('x\ny')
    const frame = '{"type":"message","text":"line\\nbreak \u2028 emoji \ud83d\ude00 \\u0000",  "spaced" : 1 }\n second line'
    const sent: Envelope = { type: 'deliver', origin: 'a', target: { kind: 'topic', topic: 'x\ny' }, frame, sentAt: Date.now() }
    await a.transport.publish(sent)
    const [got] = await b.inbox.waitFor(1, 'the frame')
    t.same(got, sent)
  })

  t.test('start rejects with context when Redis is unreachable, and leaves nothing running', async (t) => {
    const port = await freePort()
    const transport = new RedisTransport({ url: `redis://127.0.0.1:${port}`, channelPrefix: 'x:' }, quiet)
    const began = Date.now()
    await t.rejects(transport.start('a', () => {}), { name: 'TransportError', message: new RegExp(`127\\.0\\.0\\.1:${port}`) })
    t.ok(Date.now() - began < 3000, 'fails fast')
    t.equal(transport.state(), 'down')
    // A reconnect loop left behind would keep this file from ever exiting.
    await transport.close()
  })

  t.test('Redis outage: down and failing fast, then up again by itself with every topic resubscribed, no duplicates', { skip: needsRedisServer() }, async (t) => {
    const server = await PrivateRedis.start(t)
    const prefix = uniquePrefix('fault')
    const admin = new Redis(server.url, { maxRetriesPerRequest: 0, enableOfflineQueue: false, lazyConnect: true, retryStrategy: () => null })
    const logA = recordingLogger()
    const a = await started(t, { url: server.url, prefix, id: 'a', log: logA.log })
    const b = await started(t, { url: server.url, prefix, id: 'b' })
    await b.transport.subscribe('kept')

    await a.transport.publish(envelope('a', 1))
    await b.inbox.waitFor(1, 'before the outage')

    await server.stop()
    await until(() => a.transport.state() === 'down' && b.transport.state() === 'down', 3000, 'both transports to report down')
    const began = Date.now()
    await t.rejects(a.transport.publish(envelope('a', 2)), { name: 'TransportError', code: HubErrorCodes.transport, message: /unreachable/ })
    await t.rejects(a.transport.publish(envelope('a', 3), ['b']), TransportError)
    // The interest outlives the rejection and is restored with the rest.
    await t.rejects(b.transport.subscribe('late'), { name: 'TransportError', message: /unreachable/ })
    await b.transport.subscribe('dropped').catch(() => {})
    await b.transport.unsubscribe('dropped')
    t.ok(Date.now() - began < 2000, `publish and subscribe rejected in ${Date.now() - began} ms`)

    await server.start()
    await until(() => a.transport.state() === 'up' && b.transport.state() === 'up', 10_000, 'both transports to come back up')
    // 'up' means resubscribed: the server counts every channel at that moment.
    await admin.connect()
    const counts = await admin.pubsub('NUMSUB', `${prefix}all`, `${prefix}inst:b`, `${prefix}topic:kept`, `${prefix}topic:late`, `${prefix}topic:dropped`)
    admin.disconnect()
    t.same(counts, [`${prefix}all`, 2, `${prefix}inst:b`, 1, `${prefix}topic:kept`, 1, `${prefix}topic:late`, 1, `${prefix}topic:dropped`, 0])
    for (let n = 4; n <= 8; n++) await a.transport.publish(envelope('a', n))
    await a.transport.publish(envelope('a', 9, { kind: 'client', id: 'c' }), ['b'])
    await a.transport.publish(envelope('a', 10, { kind: 'topic', topic: 'kept' }))
    await a.transport.publish(envelope('a', 11, { kind: 'topic', topic: 'late' }))
    await a.transport.publish(envelope('a', 12, { kind: 'topic', topic: 'dropped' }))
    await b.inbox.waitFor(9, 'after the restart')
    // One more round trip through Redis: a duplicate would have arrived by now.
    await a.transport.publish(envelope('a', 13))
    await b.inbox.waitFor(10, 'the final marker')
    t.same(b.inbox.numbers(), [1, 4, 5, 6, 7, 8, 9, 10, 11, 13],
      'nothing queued from the outage, nothing twice, both topics restored, the dropped one not')
    t.equal(a.inbox.received.length, 0, 'a never received its own envelopes')

    const changes = logA.lines.filter((l) => l.msg.startsWith('ws-hub: Redis transport'))
    t.same(changes.map((l) => [l.level, l.msg === 'ws-hub: Redis transport up' ? 'up' : 'down']),
      [[LEVEL.info, 'up'], [LEVEL.warn, 'down'], [LEVEL.info, 'up']], 'each state change logged once')
    t.ok(changes[1]?.err !== undefined, 'the down warning carries the error')
  })
}

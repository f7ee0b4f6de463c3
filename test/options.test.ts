import t from 'tap'
import Fastify from 'fastify'
import wsHub, { DEFAULTS, normalizeOptions, OptionsError } from '../lib/index.js'

t.test('every option has its documented default', async (t) => {
  const o = normalizeOptions(undefined)
  t.equal(o.path, '/ws')
  t.equal(o.maxConnections, 10_000)
  t.equal(o.maxConnectionsPerIp, 50)
  t.equal(o.heartbeatInterval, 25_000)
  t.equal(o.maxBufferedBytes, 1024 * 1024)
  t.equal(o.maxPayload, 64 * 1024)
  t.equal(o.closeTimeout, 3000)
  t.equal(o.retryAfter, 5)
  t.equal(o.announce, false)
  t.equal(o.echo, false)
  t.equal(o.instanceId, undefined)
  t.same(o.service, {})
  t.same(o.rest, { prefix: '/api', auth: undefined, disable: new Set() })
  t.equal(o.authenticate, undefined)
  t.same(o.protocols, ['ws-hub.v1', 'ws-hub.v1.batch'])
  t.same(o.batch, { maxDelayMs: 25, maxMessages: 100 })
  t.equal(normalizeOptions({ batch: false }).batch, false)
  t.equal(o.conflateMs, 100)
  t.equal(o.preparedFrames, true)
  t.equal(o.maxConnectionsPerUser, 10)
  t.equal(o.revalidate, undefined)
  t.equal(o.revalidateInterval, 60_000)
  t.equal(o.allowedOrigins, null, 'no origin check unless configured')
  t.equal(o.allowMissingOrigin, false)
  t.same(o.messageRateLimit, { max: 200, intervalMs: 1000 })
  t.same(o.handshakeRateLimit, { max: 120, intervalMs: 60_000 })
  t.equal(o.maxJsonDepth, 32)
  t.equal(o.maxTopicsPerConnection, 100)
  t.equal(o.ipv6Prefix, 64)
  t.same(o.metrics, { path: '/metrics', prefix: 'ws_hub_', registry: undefined })
  t.equal(normalizeOptions({ metrics: false }).metrics, false)
  t.same(o.broker, { type: 'memory' })
  t.same(o.registry, { type: 'memory' })
  t.equal(DEFAULTS.maxConnectionsPerIp, 50)
})

t.test('the caller\'s options object is not mutated', async (t) => {
  const input = Object.freeze({ maxConnections: 5, rest: Object.freeze({ prefix: '/push' }) })
  const o = normalizeOptions(input)
  t.equal(o.maxConnections, 5)
  t.same(o.rest, { prefix: '/push', auth: undefined, disable: new Set() })
  t.same(input, { maxConnections: 5, rest: { prefix: '/push' } })
})

t.test('rate limits can be turned off and are copied, not shared', async (t) => {
  const limit = { max: 5, intervalMs: 10 }
  const o = normalizeOptions({ messageRateLimit: limit, handshakeRateLimit: false, allowedOrigins: ['https://a.example'] })
  t.same(o.messageRateLimit, limit)
  t.not(o.messageRateLimit, limit)
  t.equal(o.handshakeRateLimit, false)
  t.same([...(o.allowedOrigins ?? [])], ['https://a.example'])
})

t.test('rest: false disables the REST API', async (t) => {
  t.equal(normalizeOptions({ rest: false }).rest, false)
})

const bad: Array<[string, unknown, RegExp]> = [
  ['maxConnections', { maxConnections: 0 }, /option "maxConnections" must be >= 1 \(got 0\)/],
  ['maxConnectionsPerIp', { maxConnectionsPerIp: 'ten' }, /option "maxConnectionsPerIp" must be integer \(got "ten"\)/],
  ['path', { path: 'ws' }, /option "path" must match pattern/],
  ['heartbeatInterval', { heartbeatInterval: -1 }, /option "heartbeatInterval"/],
  ['maxPayload', { maxPayload: 1.5 }, /option "maxPayload" must be integer/],
  ['announce', { announce: 'yes' }, /option "announce" must be boolean/],
  ['unknown option', { maxConections: 3 }, /option "maxConections" is not a known option/],
  ['service hook', { service: { onMessage: 'nope' } }, /option "service.onMessage"/],
  ['rest.prefix', { rest: { prefix: 'api' } }, /option "rest/],
  ['rest.disable', { rest: { disable: ['nuke'] } }, /option "rest/],
  ['authenticate', { authenticate: 'token' }, /option "authenticate"/],
  ['protocols', { protocols: ['has space'] }, /option "protocols.0" must match pattern/],
  ['empty protocols', { protocols: [] }, /option "protocols"/],
  ['maxConnectionsPerUser', { maxConnectionsPerUser: 0 }, /option "maxConnectionsPerUser" must be >= 1/],
  ['revalidateInterval', { revalidateInterval: 0 }, /option "revalidateInterval" must be >= 1/],
  ['allowedOrigins', { allowedOrigins: 'https://a' }, /option "allowedOrigins" must be array/],
  ['allowMissingOrigin', { allowMissingOrigin: 1 }, /option "allowMissingOrigin" must be boolean/],
  ['messageRateLimit', { messageRateLimit: { max: 0, intervalMs: 1 } }, /option "messageRateLimit/],
  ['handshakeRateLimit', { handshakeRateLimit: true }, /option "handshakeRateLimit/],
  ['maxJsonDepth', { maxJsonDepth: 0 }, /option "maxJsonDepth" must be >= 1/],
  ['maxTopicsPerConnection', { maxTopicsPerConnection: -2 }, /option "maxTopicsPerConnection" must be >= 1/],
  ['ipv6Prefix', { ipv6Prefix: 129 }, /option "ipv6Prefix" must be <= 128/],
  ['metrics.prefix', { metrics: { prefix: 'bad-prefix' } }, /option "metrics/],
  ['metrics.path', { metrics: { path: 'metrics' } }, /option "metrics/],
  ['batch', { batch: { maxDelayMs: 0, maxMessages: 1 } }, /option "batch/],
  ['conflateMs', { conflateMs: 0 }, /option "conflateMs" must be >= 1/],
  ['preparedFrames', { preparedFrames: 'yes' }, /option "preparedFrames" must be boolean/]
]

for (const [name, options, message] of bad) {
  t.test(`a bad ${name} fails register with a one-line message naming it`, async (t) => {
    t.throws(() => normalizeOptions(options as never), OptionsError)
    const app = Fastify()
    const error = await app.register(wsHub, options as never).ready().then(() => null, (err: Error) => err)
    t.type(error, OptionsError)
    t.match(error?.message, message)
    t.notMatch(error?.message, /\n/, 'one line')
  })
}

t.test('an unknown broker type is refused at register', async (t) => {
  const app = Fastify()
  await t.rejects(async () => app.register(wsHub, { broker: { type: 'nats' } as never }).ready(), /option "broker.type" must be one of/)
})

t.test('registering next to @fastify/websocket is refused with a clear message', async (t) => {
  const app = Fastify()
  const websocket = (await import('@fastify/websocket')).default
  await app.register(websocket)
  await t.rejects(async () => app.register(wsHub).ready(), /@fastify\/websocket is already registered/)
})

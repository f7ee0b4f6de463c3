import t from 'tap'
import Fastify from 'fastify'
import wsHub, { DEFAULTS, normalizeOptions, OptionsError } from '../lib/index.js'
import { KAFKA_DEFAULTS, normalizeKafkaOptions } from '../lib/cluster/kafka/kafka-options.js'

t.test('every option has its documented default', async (t) => {
  const o = normalizeOptions(undefined)
  t.equal(o.path, '/ws')
  t.equal(o.maxConnections, 10_000)
  t.equal(o.maxConnectionsPerIp, 50)
  t.equal(o.heartbeatIntervalMs, 25_000)
  t.equal(o.maxBufferedBytes, 1024 * 1024)
  t.equal(o.maxPayload, 64 * 1024)
  t.equal(o.closeTimeoutMs, 3000)
  t.equal(o.retryAfterMs, 5000)
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
  t.equal(o.revalidateIntervalMs, 60_000)
  t.equal(o.allowedOrigins, null, 'no origin check unless configured')
  t.equal(o.allowMissingOrigin, false)
  t.same(o.messageRateLimit, { max: 200, intervalMs: 1000 })
  t.same(o.handshakeRateLimit, { max: 120, intervalMs: 60_000 })
  t.equal(o.maxJsonDepth, 32)
  t.equal(o.maxTopicsPerConnection, 100)
  t.equal(o.ipv6Prefix, 64)
  t.same(o.metrics, { path: '/metrics', prefix: 'ws_hub_' })
  t.equal(normalizeOptions({ metrics: false }).metrics, false)
  t.same(o.broker, { type: 'memory' })
  t.same(o.registry, { type: 'memory' })
  t.same(o.route, {})
  t.equal(o.queryTimeoutMs, 2000)
  t.equal(o.maxEnvelopeAgeMs, 3000)
  t.equal(normalizeOptions({ maxEnvelopeAgeMs: 10_000 }).maxEnvelopeAgeMs, 10_000)
  t.equal(DEFAULTS.maxConnectionsPerIp, 50)
  t.notOk('heartbeatInterval' in o, 'normalized options carry only the new names')
})

t.test('DEFAULTS come from the schemas and are what normalization fills in', async (t) => {
  const o = normalizeOptions({})
  for (const [name, value] of Object.entries(DEFAULTS)) {
    if (name === 'rest') continue
    t.same(o[name as keyof typeof o], value, name)
  }
  t.same(DEFAULTS.rest, { prefix: '/api', disable: [] })
  t.same(DEFAULTS.batch, { maxDelayMs: 25, maxMessages: 100 }, 'nested defaults are filled too')
  t.same(DEFAULTS.metrics, { path: '/metrics', prefix: 'ws_hub_' })
  t.notOk('instanceId' in DEFAULTS, 'an option with no default is not listed')
  t.ok(Object.isFrozen(DEFAULTS) && Object.isFrozen(DEFAULTS.batch) && Object.isFrozen(DEFAULTS.protocols), 'deep-frozen')
  t.not(o.protocols, DEFAULTS.protocols, 'normalized options do not share the frozen defaults')
  o.protocols.push('mine')
  t.same(DEFAULTS.protocols, ['ws-hub.v1', 'ws-hub.v1.batch'])
})

// The defaults' values are pinned in kafka-transport.test.ts; here, that
// normalization fills them in from the one schema.
t.test('Kafka options are filled from the broker schema', async (t) => {
  const config = normalizeKafkaOptions({ type: 'kafka', brokers: ['k:9092'], partitions: 3 })
  t.same(config, { ...KAFKA_DEFAULTS, type: 'kafka', brokers: ['k:9092'], partitions: 3 })
  t.same(normalizeOptions({ broker: { type: 'kafka', brokers: ['k:9092'] } }).broker, { ...KAFKA_DEFAULTS, type: 'kafka', brokers: ['k:9092'] })
})

t.test('Redis backends get their defaults, and keep the user\'s client', async (t) => {
  class FakeRedis {}
  const client = new FakeRedis()
  const o = normalizeOptions({
    broker: { type: 'redis', url: 'redis://localhost' },
    registry: { type: 'redis', client: client as never }
  })
  t.same(o.broker, { type: 'redis', url: 'redis://localhost', channelPrefix: 'ws-hub:' })
  t.same(o.registry, { type: 'redis', client, keyPrefix: 'ws-hub:', leaseMs: 15_000 })
  t.equal(o.registry.type === 'redis' && o.registry.client, client, 'the same client, not a copy')
})

t.test('the caller\'s options object is not mutated', async (t) => {
  const input = Object.freeze({ maxConnections: 5, rest: Object.freeze({ prefix: '/push' }) })
  const o = normalizeOptions(input)
  t.equal(o.maxConnections, 5)
  t.same(o.rest, { prefix: '/push', auth: undefined, disable: new Set() })
  t.same(input, { maxConnections: 5, rest: { prefix: '/push' } })
})

t.test('deep-frozen options, aliases and backends included, normalize without a write', async (t) => {
  const deepFreeze = <T>(value: T): T => {
    if (typeof value === 'object' && value !== null) {
      for (const inner of Object.values(value)) deepFreeze(inner)
      Object.freeze(value)
    }
    return value
  }
  const transport = { start: async () => {}, publish: async () => {}, subscribe: async () => {}, unsubscribe: async () => {}, state: () => 'up' as const, close: async () => {} }
  const input = deepFreeze({
    retryAfter: 2,
    heartbeatInterval: 10,
    batch: { maxDelayMs: 5 },
    metrics: {},
    rest: { disable: ['stats' as const] },
    broker: { type: 'custom' as const, broker: transport },
    registry: { type: 'redis' as const, url: 'redis://r' }
  })
  const before = JSON.stringify(input)
  const o = normalizeOptions(input)
  t.equal(JSON.stringify(input), before)
  t.equal(o.retryAfterMs, 2000)
  t.equal(o.heartbeatIntervalMs, 10)
  t.same(o.batch, { maxDelayMs: 5, maxMessages: 100 })
  t.same(o.rest, { prefix: '/api', auth: undefined, disable: new Set(['stats']) })
  t.same(o.broker, { type: 'custom', transport })
  t.equal(o.broker.type === 'custom' && o.broker.transport, transport, 'a custom transport keeps its identity')
})

t.test('each deprecated name maps to its Ms name', async (t) => {
  t.equal(normalizeOptions({ heartbeatInterval: 1000 }).heartbeatIntervalMs, 1000)
  t.equal(normalizeOptions({ heartbeatInterval: 0 }).heartbeatIntervalMs, 0, 'a zero is kept, not taken for missing')
  t.equal(normalizeOptions({ closeTimeout: 500 }).closeTimeoutMs, 500)
  t.equal(normalizeOptions({ revalidateInterval: 30_000 }).revalidateIntervalMs, 30_000)
  t.equal(normalizeOptions({ retryAfter: 7 }).retryAfterMs, 7000, 'retryAfter was in seconds')
  t.equal(normalizeOptions({ retryAfter: 0.5 }).retryAfterMs, 500)
  const o = normalizeOptions({ retryAfter: 1, closeTimeout: 1 })
  t.notOk('retryAfter' in o || 'closeTimeout' in o)
})

t.test('a deprecated name is checked, and the error names what the user wrote', async (t) => {
  t.throws(() => normalizeOptions({ retryAfter: -1 }), { message: /option "retryAfter" must be >= 0 \(got -1\)/ })
  t.throws(() => normalizeOptions({ heartbeatInterval: 'often' } as never), { message: /option "heartbeatInterval" must be integer \(got "often"\)/ })
})

t.test('the old and the new name together are an error naming both', async (t) => {
  const pairs: Array<[string, string]> = [
    ['heartbeatInterval', 'heartbeatIntervalMs'],
    ['closeTimeout', 'closeTimeoutMs'],
    ['revalidateInterval', 'revalidateIntervalMs'],
    ['retryAfter', 'retryAfterMs']
  ]
  for (const [old, current] of pairs) {
    t.throws(() => normalizeOptions({ [old]: 1, [current]: 1 }), OptionsError)
    t.throws(() => normalizeOptions({ [old]: 1, [current]: 1 }), { message: new RegExp(`option "${old}".*"${current}"`) })
  }
  t.throws(() => normalizeOptions({ broker: { type: 'custom', broker: {}, transport: {} } as never }),
    { message: /option "broker\.broker" .*"broker\.transport"/ })
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

t.test('rest.auth is a function, or false to run the push API open on purpose', async (t) => {
  const auth = (): boolean => true
  const on = normalizeOptions({ rest: { auth } }).rest
  t.equal(on !== false && on.auth, auth)
  const open = normalizeOptions({ rest: { auth: false } }).rest
  t.equal(open !== false && open.auth, false)
  t.throws(() => normalizeOptions({ rest: { auth: true } } as never), { message: /option "rest\.auth" must be false or a function \(got true\)/ })
})

t.test('a custom registry is a limiter and a directory', async (t) => {
  const limiter = {} as never
  const directory = {} as never
  const o = normalizeOptions({ registry: { type: 'custom', limiter, directory } })
  t.same(o.registry, { type: 'custom', limiter, directory })
  t.equal(o.registry.type === 'custom' && o.registry.limiter, limiter)
  t.throws(() => normalizeOptions({ registry: { type: 'custom', limiter } } as never), { message: /option "registry\.directory" is required/ })
  t.throws(() => normalizeOptions({ registry: { type: 'custom', registry: {} } } as never),
    { message: /option "registry\.registry" is not a known option; a custom registry is now \{ type: 'custom', limiter, directory \}/ })
})

const bad: Array<[string, unknown, RegExp]> = [
  ['maxConnections', { maxConnections: 0 }, /option "maxConnections" must be >= 1 \(got 0\)/],
  ['maxConnectionsPerIp', { maxConnectionsPerIp: 'ten' }, /option "maxConnectionsPerIp" must be integer \(got "ten"\)/],
  ['path', { path: 'ws' }, /option "path" must match pattern/],
  ['heartbeatIntervalMs', { heartbeatIntervalMs: -1 }, /option "heartbeatIntervalMs"/],
  ['closeTimeoutMs', { closeTimeoutMs: 1.5 }, /option "closeTimeoutMs" must be integer/],
  ['retryAfterMs', { retryAfterMs: -1 }, /option "retryAfterMs" must be >= 0 \(got -1\)/],
  ['maxPayload', { maxPayload: 1.5 }, /option "maxPayload" must be integer/],
  ['announce', { announce: 'yes' }, /option "announce" must be boolean/],
  ['unknown option', { maxConections: 3 }, /option "maxConections" is not a known option/],
  ['service hook', { service: { onMessage: 'nope' } }, /option "service.onMessage"/],
  ['rest.prefix', { rest: { prefix: 'api' } }, /option "rest.prefix" must match pattern/],
  ['rest.disable', { rest: { disable: ['nuke'] } }, /option "rest.disable.0" must be one of "listConnections", .* \(got "nuke"\)/],
  ['rest key', { rest: { prefx: '/a' } }, /option "rest.prefx" is not a known option/],
  ['rest', { rest: true }, /option "rest" must be false or an object \(got true\)/],
  ['authenticate', { authenticate: 'token' }, /option "authenticate"/],
  ['protocols', { protocols: ['has space'] }, /option "protocols.0" must match pattern/],
  ['empty protocols', { protocols: [] }, /option "protocols"/],
  ['maxConnectionsPerUser', { maxConnectionsPerUser: 0 }, /option "maxConnectionsPerUser" must be >= 1/],
  ['revalidateIntervalMs', { revalidateIntervalMs: 0 }, /option "revalidateIntervalMs" must be >= 1/],
  ['revalidateInterval', { revalidateInterval: 0 }, /option "revalidateInterval" must be >= 1/],
  ['allowedOrigins', { allowedOrigins: 'https://a' }, /option "allowedOrigins" must be array/],
  ['allowMissingOrigin', { allowMissingOrigin: 1 }, /option "allowMissingOrigin" must be boolean/],
  ['messageRateLimit', { messageRateLimit: { max: 0, intervalMs: 1 } }, /option "messageRateLimit.max" must be >= 1/],
  ['handshakeRateLimit', { handshakeRateLimit: true }, /option "handshakeRateLimit" must be false or an object/],
  ['maxJsonDepth', { maxJsonDepth: 0 }, /option "maxJsonDepth" must be >= 1/],
  ['maxTopicsPerConnection', { maxTopicsPerConnection: -2 }, /option "maxTopicsPerConnection" must be >= 1/],
  ['ipv6Prefix', { ipv6Prefix: 129 }, /option "ipv6Prefix" must be <= 128/],
  ['metrics.prefix', { metrics: { prefix: 'bad-prefix' } }, /option "metrics.prefix" must match pattern/],
  ['metrics.path', { metrics: { path: 'metrics' } }, /option "metrics.path"/],
  ['batch', { batch: { maxDelayMs: 0, maxMessages: 1 } }, /option "batch.maxDelayMs" must be >= 1/],
  ['route.onRequest', { route: { onRequest: 'hook' } }, /option "route.onRequest" must be a function or an array \(got "hook"\)/],
  ['route key', { route: { onSend: () => {} } }, /option "route.onSend" is not a known option/],
  ['queryTimeoutMs', { queryTimeoutMs: 0 }, /option "queryTimeoutMs" must be >= 1 \(got 0\)/],
  ['maxEnvelopeAgeMs', { maxEnvelopeAgeMs: 0 }, /option "maxEnvelopeAgeMs" must be >= 1 \(got 0\)/],
  ['maxEnvelopeAgeMs type', { maxEnvelopeAgeMs: '3s' }, /option "maxEnvelopeAgeMs" must be integer/],
  ['conflateMs', { conflateMs: 0 }, /option "conflateMs" must be >= 1/],
  ['preparedFrames', { preparedFrames: 'yes' }, /option "preparedFrames" must be boolean/],
  ['broker', { broker: 'redis' }, /option "broker" must be an object with a "type" \(got "redis"\)/],
  ['broker.type', { broker: { type: 'nats' } }, /option "broker.type" must be one of memory, redis, kafka, custom \(got "nats"\)/],
  ['broker.partitions', { broker: { type: 'kafka', brokers: ['k:9092'], partitions: 0 } }, /option "broker.partitions" must be an integer from 1 to \d+ \(got 0\)/],
  ['broker.brokers', { broker: { type: 'kafka', brokers: [''] } }, /option "broker.brokers" must be a non-empty array of "host:port" strings \(got \[""\]\)/],
  ['missing broker.brokers', { broker: { type: 'kafka' } }, /option "broker.brokers" is required/],
  ['broker.acks', { broker: { type: 'kafka', brokers: ['k:9092'], acks: 0 } }, /option "broker.acks" must be 1 or -1 \(got 0\)/],
  ['broker.replicationFactor', { broker: { type: 'kafka', brokers: ['k:9092'], replicationFactor: 0 } }, /option "broker.replicationFactor" must be -1 \(cluster default\) or at least 1/],
  ['broker.url', { broker: { type: 'redis', url: 42 } }, /option "broker.url" must be a non-empty string \(got 42\)/],
  ['broker key', { broker: { type: 'redis', channelprefix: 'x' } }, /option "broker.channelprefix" is not a known option/],
  ['broker.transport', { broker: { type: 'custom' } }, /option "broker.transport" is required/],
  ['registry.type', { registry: { type: 'kafka' } }, /option "registry.type" must be one of memory, redis, custom/],
  ['registry.leaseMs', { registry: { type: 'redis', url: 'redis://r', leaseMs: 50 } }, /option "registry.leaseMs" must be an integer of at least 100 \(got 50\)/]
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

t.test('@fastify/websocket registered with a larger maxPayload is refused, naming the option to pass', async (t) => {
  const app = Fastify()
  const websocket = (await import('@fastify/websocket')).default
  await app.register(websocket)
  await t.rejects(async () => app.register(wsHub, { rest: false }).ready(), /@fastify\/websocket was registered with maxPayload \d+, larger than the hub's maxPayload 65536/)
})

t.test('history: the store follows the registry unless given, with maxRecovery and idempotencyWindowMs', async (t) => {
  const memory = normalizeOptions({})
  t.same(memory.history, { type: 'memory' }, 'memory with a memory registry')
  t.equal(memory.maxRecovery, 300)
  t.equal(memory.idempotencyWindowMs, 300_000)
  t.equal(DEFAULTS.maxRecovery, 300)
  t.equal(DEFAULTS.idempotencyWindowMs, 300_000)
  t.same(normalizeOptions({ registry: { type: 'redis', url: 'redis://r', keyPrefix: 'app:' } }).history,
    { type: 'redis', url: 'redis://r', keyPrefix: 'app:' }, 'the registry\'s Redis and prefix')
  const client = { duplicate: () => client }
  const shared = normalizeOptions({ registry: { type: 'redis', client: client as never } }).history
  t.equal(shared.type === 'redis' && shared.client, client, 'the registry\'s client itself, not a copy')
  t.same(normalizeOptions({ registry: { type: 'redis', url: 'redis://r' }, history: { type: 'memory' } }).history, { type: 'memory' }, 'given: kept')
  t.same(normalizeOptions({ history: { type: 'redis', url: 'redis://h' } }).history, { type: 'redis', url: 'redis://h', keyPrefix: 'ws-hub:' })
  const store = { append: async () => {}, read: async () => {}, position: async () => {}, close: async () => {} }
  const custom = normalizeOptions({ history: { type: 'custom', history: store as never } }).history
  t.equal(custom.type === 'custom' && custom.history, store, 'a custom store keeps its identity')
  t.same(normalizeOptions({ maxRecovery: 50, idempotencyWindowMs: 1_000 }).maxRecovery, 50)
})

t.test('history: a topic rule, off by default', async (t) => {
  const o = normalizeOptions({ topics: { namespaces: { user: { subscribe: 'owner', history: { size: 100, ttlMs: 60_000 } }, chat: {} } } })
  t.same(o.topics?.namespaces?.get('user')?.history, { size: 100, ttlMs: 60_000 })
  t.equal(o.topics?.namespaces?.get('chat')?.history, false)
  t.equal(o.topics?.default.history, false)
})

for (const [name, options, message] of [
  ['history.type', { history: { type: 'disk' } }, /option "history.type" must be one of memory, redis, custom \(got "disk"\)/],
  ['history.keyPrefix', { history: { type: 'redis', url: 'redis://h', keyPrefix: 3 } }, /option "history.keyPrefix"/],
  ['maxRecovery', { maxRecovery: 0 }, /option "maxRecovery"/],
  ['idempotencyWindowMs', { idempotencyWindowMs: 1.5 }, /option "idempotencyWindowMs"/],
  ['topics history size', { topics: { default: { history: { size: 0, ttlMs: 1 } } } }, /option "topics.default.history.size" must be an integer of at least 1 \(got 0\)/],
  ['topics history ttlMs', { topics: { namespaces: { a: { history: { size: 1 } } } } }, /option "topics.namespaces.a.history.ttlMs" is required/],
  ['topics history true', { topics: { default: { history: true } } }, /option "topics.default.history"/]
] as const) {
  t.test(`history: ${name} is checked`, async (t) => {
    t.throws(() => normalizeOptions(options as never), { message })
  })
}

/**
 * No Docker engine runs the tests, so docker-compose.yml and the Dockerfile
 * are checked statically: the compose file against the official Compose
 * Specification schema, then the points that make this deployment work
 * (health-gated startup, a KRaft Kafka the app can reach, --scale without
 * port clashes, an image that carries what the example imports).
 *
 * test/fixtures/compose-spec.json is schema/compose-spec.json of
 * https://github.com/compose-spec/compose-spec at commit
 * 00655e2222608fa6eaecdf12ac5195889ca2244a, unmodified.
 */
import { readFile, readdir } from 'node:fs/promises'
import { builtinModules } from 'node:module'
import t from 'tap'
import { parseDocument } from 'yaml'
import { Ajv, type ValidateFunction } from 'ajv'
import { readConfig, readPriceFeedConfig, PRICE_FEED_TOPIC } from '../example/config.js'

const root = new URL('../', import.meta.url)
const read = (path: string): Promise<string> => readFile(new URL(path, root), 'utf8')

type EnvValue = string | number | boolean | null
interface PortObject { target?: number | string, published?: number | string }
interface Service {
  image?: string
  build?: unknown
  command?: string | string[]
  environment?: Record<string, EnvValue> | string[]
  ports?: Array<number | string | PortObject>
  depends_on?: string[] | Record<string, { condition: string }>
  healthcheck?: { test?: string | string[], disable?: boolean | string }
}
interface ComposeFile { services: Record<string, Service> }

// ---- parsing and schema validation ----

async function composeValidator (): Promise<ValidateFunction> {
  const schema = JSON.parse(await read('test/fixtures/compose-spec.json')) as { $schema: string }
  // The official schema omits `type` beside some keywords; strict typing is a
  // rule for schemas we write, not for this one.
  const ajv = new Ajv({ allErrors: true, allowUnionTypes: true, strictTypes: false })
  // It names draft-07 by its https URI; Ajv ships draft-07 under http.
  const draft07 = ajv.getSchema('http://json-schema.org/draft-07/schema')?.schema
  if (draft07 === undefined || typeof draft07 !== 'object') throw new Error('Ajv has no draft-07 meta-schema')
  ajv.addMetaSchema({ ...draft07, $id: schema.$schema })
  return ajv.compile(schema)
}

/** YAML errors (syntax, duplicate keys) and schema errors, as readable lines. */
function validate (validator: ValidateFunction, text: string): { problems: string[], value: unknown } {
  const document = parseDocument(text, { prettyErrors: true })
  const problems = [...document.errors, ...document.warnings].map((e) => `yaml: ${e.message}`)
  if (problems.length > 0) return { problems, value: undefined }
  const value: unknown = document.toJS()
  if (!validator(value)) {
    for (const error of validator.errors ?? []) problems.push(`schema: ${error.instancePath || '/'} ${error.message ?? ''} ${JSON.stringify(error.params)}`)
  }
  return { problems, value }
}

function envOf (service: Service | undefined): Record<string, string> {
  const env = service?.environment
  if (env === undefined) return {}
  if (Array.isArray(env)) {
    return Object.fromEntries(env.map((entry) => {
      const at = entry.indexOf('=')
      return at === -1 ? [entry, ''] : [entry.slice(0, at), entry.slice(at + 1)]
    }))
  }
  return Object.fromEntries(Object.entries(env).map(([key, value]) => [key, value === null ? '' : String(value)]))
}

// ---- the deployment's rules, each returning what is wrong ----

/** `[HOST_IP:][HOST:]CONTAINER[/PROTOCOL]`, HOST_IP possibly `[v6]`. */
function parsePort (port: number | string | PortObject): { published: string | undefined, target: string } {
  if (typeof port === 'number') return { published: undefined, target: String(port) }
  if (typeof port === 'object') return { published: port.published === undefined ? undefined : String(port.published), target: String(port.target) }
  let rest = port.replace(/\/(tcp|udp|sctp)$/, '')
  if (rest.startsWith('[')) rest = rest.slice(rest.indexOf(']') + 2)
  const parts = rest.split(':')
  const target = parts.pop() ?? ''
  const published = parts.pop()
  return { published: published === '' ? undefined : published, target }
}

const SCALE = 3

/** `--scale app=3` needs ephemeral host ports or a range of at least three. */
function scaleProblems (service: Service | undefined): string[] {
  const problems: string[] = []
  for (const port of service?.ports ?? []) {
    const { published } = parsePort(port)
    if (published === undefined) continue
    const range = /^(\d+)-(\d+)$/.exec(published)
    const size = range === null ? 1 : Number(range[2]) - Number(range[1]) + 1
    if (size < SCALE) problems.push(`host port ${published} fits ${size} replica(s), not ${SCALE}`)
  }
  return problems
}

function dependencyProblems (compose: ComposeFile, name: string, needs: string[]): string[] {
  const problems: string[] = []
  const dependsOn = compose.services[name]?.depends_on
  for (const dependency of needs) {
    const condition = Array.isArray(dependsOn) || dependsOn === undefined ? undefined : dependsOn[dependency]?.condition
    if (condition !== 'service_healthy') problems.push(`${name} does not wait for ${dependency} to be healthy (condition ${String(condition)})`)
    if (compose.services[dependency] === undefined) problems.push(`${dependency} is not a service`)
  }
  return problems
}

function healthcheckProblems (compose: ComposeFile): string[] {
  const problems: string[] = []
  for (const [name, service] of Object.entries(compose.services)) {
    const check = service.healthcheck
    const test = check?.test
    if (check === undefined || test === undefined || check.disable === true || (Array.isArray(test) && test[0] === 'NONE')) {
      problems.push(`${name} has no healthcheck`)
    }
  }
  return problems
}

/** Listener strings like `INTERNAL://kafka:9092` by name. */
function listeners (value: string | undefined): Map<string, { host: string, port: string }> {
  const result = new Map<string, { host: string, port: string }>()
  for (const entry of (value ?? '').split(',').filter((e) => e !== '')) {
    const match = /^([A-Z_]+):\/\/([^:]*):(\d+)$/.exec(entry.trim())
    if (match === null) continue
    result.set(match[1] as string, { host: match[2] as string, port: match[3] as string })
  }
  return result
}

const KAFKA_CLIENTS = ['app', 'prices']

function kafkaProblems (compose: ComposeFile): string[] {
  const problems: string[] = []
  const kafka = compose.services.kafka
  const env = envOf(kafka)
  if (!/^apache\/kafka:3\.9\.\d+$/.test(kafka?.image ?? '')) problems.push(`kafka image is ${String(kafka?.image)}, not apache/kafka:3.9.x`)

  const roles = new Set((env.KAFKA_PROCESS_ROLES ?? '').split(',').map((r) => r.trim()))
  if (!roles.has('broker') || !roles.has('controller') || roles.size !== 2) problems.push(`KAFKA_PROCESS_ROLES is ${String(env.KAFKA_PROCESS_ROLES)}, not broker,controller`)
  const nodeId = env.KAFKA_NODE_ID
  if (nodeId === undefined || !/^\d+$/.test(nodeId)) problems.push('KAFKA_NODE_ID is missing')

  const bound = listeners(env.KAFKA_LISTENERS)
  const advertised = listeners(env.KAFKA_ADVERTISED_LISTENERS)
  const protocols = new Set((env.KAFKA_LISTENER_SECURITY_PROTOCOL_MAP ?? '').split(',').map((p) => p.split(':')[0]))
  const controllerName = env.KAFKA_CONTROLLER_LISTENER_NAMES ?? ''
  const controller = bound.get(controllerName)
  if (controller === undefined) problems.push(`controller listener ${controllerName} is not in KAFKA_LISTENERS`)
  if (advertised.has(controllerName)) problems.push('the controller listener must not be advertised')
  if (env.KAFKA_CONTROLLER_QUORUM_VOTERS !== `${String(nodeId)}@kafka:${controller?.port ?? '?'}`) {
    problems.push(`KAFKA_CONTROLLER_QUORUM_VOTERS is ${String(env.KAFKA_CONTROLLER_QUORUM_VOTERS)}`)
  }
  for (const [name, { port }] of advertised) {
    if (bound.get(name)?.port !== port) problems.push(`advertised listener ${name} is not bound on port ${port}`)
  }
  for (const name of bound.keys()) {
    if (!protocols.has(name)) problems.push(`listener ${name} has no security protocol`)
  }
  const interBroker = advertised.get(env.KAFKA_INTER_BROKER_LISTENER_NAME ?? '')
  if (interBroker?.host !== 'kafka') problems.push('the inter-broker listener is not advertised as kafka on the compose network')
  if (![...advertised.values()].some((l) => l.host === 'localhost')) problems.push('no listener is advertised for clients on the host')

  for (const key of ['KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR', 'KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR', 'KAFKA_TRANSACTION_STATE_LOG_MIN_ISR']) {
    if (env[key] !== '1') problems.push(`${key} must be 1 on a single broker (is ${String(env[key])})`)
  }
  if (env.KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS !== '0') problems.push('KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS is not 0')

  const test = [kafka?.healthcheck?.test ?? []].flat().join(' ')
  if (!/\/opt\/kafka\/bin\/(kafka-broker-api-versions|kafka-topics)\.sh/.test(test)) problems.push('the kafka healthcheck does not ask the broker')

  // The app and the price feed reach Kafka through a listener advertised on
  // the compose network: in a container, localhost is the container itself.
  const onNetwork = [...advertised.values()].filter((l) => l.host !== 'localhost')
  for (const client of KAFKA_CLIENTS) {
    for (const address of (envOf(compose.services[client]).KAFKA_BROKERS ?? '').split(',')) {
      const [host, port] = address.trim().split(':')
      if (!onNetwork.some((l) => l.host === host && l.port === port)) problems.push(`${client}'s KAFKA_BROKERS ${address} is no listener advertised on the compose network`)
    }
  }
  return problems
}

// ---- the tests ----

t.test('docker-compose.yml follows the Compose Specification', async (t) => {
  const validator = await composeValidator()
  const { problems } = validate(validator, await read('docker-compose.yml'))
  t.same(problems, [])
})

t.test('broken compose files are rejected', async (t) => {
  const validator = await composeValidator()
  const good = await read('docker-compose.yml')
  const broken = (from: string, to: string): string => {
    t.ok(good.includes(from), `the fixture still contains ${JSON.stringify(from)}`)
    return good.replace(from, to)
  }
  const cases: Array<[string, string]> = [
    ['an unknown condition', broken('condition: service_healthy', 'condition: healthy')],
    ['a misspelt key', broken('    healthcheck:', '    healthcheckk:')],
    ['a duplicate key', broken('    image: redis:7-alpine', '    image: redis:7-alpine\n    image: redis:6')],
    ['a YAML syntax error', broken('  redis:\n', '  redis:\n   - oops\n')],
    ['a port of the wrong type', broken('      - "3000-3002:3000"', '      - { target: [3000] }')]
  ]
  for (const [what, text] of cases) {
    t.not(validate(validator, text).problems.length, 0, `${what} is an error`)
  }
})

t.test('the deployment: health-gated, scalable, and wired together', async (t) => {
  const validator = await composeValidator()
  const { problems, value } = validate(validator, await read('docker-compose.yml'))
  t.same(problems, [])
  const compose = value as ComposeFile

  t.same(Object.keys(compose.services).sort(), ['app', 'kafka', 'prices', 'redis'])
  t.same(dependencyProblems(compose, 'app', ['redis', 'kafka']), [], 'app waits for healthy redis and kafka')
  t.same(dependencyProblems(compose, 'prices', ['kafka']), [], 'the price feed waits for healthy kafka')
  t.same(healthcheckProblems(compose), [], 'every service has a healthcheck')
  t.same(scaleProblems(compose.services.app), [], `--scale app=${SCALE} does not clash on host ports`)
  t.same(kafkaProblems(compose), [], 'single-node KRaft Kafka')

  const redis = compose.services.redis
  t.equal(redis?.image, 'redis:7-alpine')
  t.match([redis?.healthcheck?.test ?? []].flat().join(' '), /redis-cli.*ping/)

  // What the example makes of the app's environment.
  const appEnv = envOf(compose.services.app)
  const config = readConfig(appEnv)
  t.same(config.hub.broker, { type: 'kafka', brokers: ['kafka:9092'] }, 'Kafka carries messages')
  t.same(config.hub.registry, { type: 'redis', url: 'redis://redis:6379' }, 'Redis holds the registry')
  t.equal(config.host, '0.0.0.0', 'reachable from outside the container')
  t.same((compose.services.app?.ports ?? []).map((p) => parsePort(p).target), [String(config.port)], 'the published port is the one the server listens on')

  // One price feed for all the app's replicas, from the same image.
  const app = compose.services.app
  const prices = compose.services.prices
  t.type(app?.image, 'string', 'the app\'s image is named, so another service can run it')
  t.equal(prices?.image, app?.image, 'the price feed runs the app\'s image')
  t.same(prices?.build, app?.build, 'built from the same context')
  t.same(prices?.command, ['node', '.build/example/price-feed.js'], 'with the feed as its command')
  t.same(prices?.ports, undefined, 'it serves nothing')
  t.match([prices?.healthcheck?.test ?? []].flat().join(' '), /price-feed\.js --healthcheck/, 'its probe is the feed\'s own')
  const feed = readPriceFeedConfig(envOf(prices))
  t.same(feed.brokers, ['kafka:9092'])
  t.equal(feed.topic, PRICE_FEED_TOPIC)
  t.match(config.hub.sources, [{ type: 'kafka', brokers: feed.brokers, topics: [feed.topic], groupId: feed.group }], 'the app reads the topic the feed produces to, in one shared group')
})

t.test('the rules catch what they are meant to', async (t) => {
  t.same(scaleProblems({ ports: ['3000:3000'] }), ['host port 3000 fits 1 replica(s), not 3'])
  t.same(scaleProblems({ ports: ['127.0.0.1:3000:3000/tcp'] }).length, 1)
  t.same(scaleProblems({ ports: [{ target: 3000, published: 8080 }] }).length, 1)
  t.same(scaleProblems({ ports: ['3000-3001:3000'] }).length, 1)
  t.same(scaleProblems({ ports: ['3000', 3000, '[::1]::3000', '3000-3009:3000', { target: 3000 }] }), [])

  const compose = (services: Record<string, Service>): ComposeFile => ({ services })
  t.same(dependencyProblems(compose({ app: { depends_on: ['redis'] }, redis: {} }), 'app', ['redis']).length, 1, 'a list does not wait for health')
  t.same(dependencyProblems(compose({ app: { depends_on: { redis: { condition: 'service_started' } } }, redis: {} }), 'app', ['redis']).length, 1)
  t.same(healthcheckProblems(compose({ a: {}, b: { healthcheck: { test: ['NONE'] } }, c: { healthcheck: { test: 'true', disable: true } } })).length, 3)

  const good = parseDocument(await read('docker-compose.yml')).toJS() as ComposeFile
  const withKafkaEnv = (changes: Record<string, string>): ComposeFile => {
    const copy = structuredClone(good)
    const kafka = copy.services.kafka as Service
    kafka.environment = { ...envOf(kafka), ...changes }
    return copy
  }
  t.not(kafkaProblems(withKafkaEnv({ KAFKA_PROCESS_ROLES: 'broker' })).length, 0, 'broker only is not KRaft single node')
  t.not(kafkaProblems(withKafkaEnv({ KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR: '3' })).length, 0, 'replication factor 3')
  t.not(kafkaProblems(withKafkaEnv({ KAFKA_ADVERTISED_LISTENERS: 'INTERNAL://localhost:9092' })).length, 0, 'advertised as localhost to containers')
  t.not(kafkaProblems(withKafkaEnv({ KAFKA_CONTROLLER_QUORUM_VOTERS: '1@kafka:9092' })).length, 0, 'voters on the wrong port')
  const oldImage = structuredClone(good)
  ;(oldImage.services.kafka as Service).image = 'apache/kafka:3.7.0'
  t.not(kafkaProblems(oldImage).length, 0, 'another Kafka version')
  const feedAt = (brokers: string): ComposeFile => {
    const copy = structuredClone(good)
    ;(copy.services.prices as Service).environment = { KAFKA_BROKERS: brokers }
    return copy
  }
  t.same(kafkaProblems(feedAt('localhost:29092')), ['prices\'s KAFKA_BROKERS localhost:29092 is no listener advertised on the compose network'], 'the feed pointed at the host\'s listener')
  t.same(kafkaProblems(feedAt('kafka:29092')).length, 1, 'the right host on the wrong port')
  const noFeed = structuredClone(good)
  delete noFeed.services.prices
  t.not(kafkaProblems(noFeed).length, 0, 'no price feed')
})

// ---- the image compose builds ----

interface Instruction { keyword: string, args: string }

/** Dockerfile instructions with line continuations joined and comments dropped. */
function instructions (dockerfile: string): Instruction[] {
  const joined = dockerfile.split('\n').filter((line) => !/^\s*#/.test(line)).join('\n').replace(/\\\n/g, ' ')
  return joined.split('\n').map((line) => line.trim()).filter((line) => line !== '').map((line) => {
    const space = line.search(/\s/)
    return { keyword: line.slice(0, space).toUpperCase(), args: line.slice(space + 1).trim() }
  })
}

t.test('the Dockerfile builds a non-root node:20-slim image of the example', async (t) => {
  const all = instructions(await read('Dockerfile'))
  const froms = all.filter((i) => i.keyword === 'FROM').map((i) => i.args)
  t.ok(froms.length >= 2, 'multi-stage')
  for (const from of froms) t.match(from, /^node:20-slim AS \w+$/i)

  const lastFrom = all.map((i) => i.keyword).lastIndexOf('FROM')
  const runtime = all.slice(lastFrom)
  const args = (keyword: string): string[] => runtime.filter((i) => i.keyword === keyword).map((i) => i.args)
  const users = args('USER')
  t.equal(users.length, 1)
  t.notMatch(users[0] ?? 'root', /^(root|0)(:|$)/, 'runs as a non-root user')
  t.same(args('EXPOSE'), ['3000'])
  t.match(args('ENV').join(' '), /HOST=0\.0\.0\.0/)
  t.match(args('HEALTHCHECK').join(' '), /CMD \["node", "\.build\/example\/healthcheck\.js"\]/)
  t.same(args('CMD'), ['["node", ".build/example/server.js"]'])
  const exampleSources = await readdir(new URL('example/', root))
  t.ok(exampleSources.includes('healthcheck.ts') && exampleSources.includes('server.ts'), 'both scripts are compiled from example/')
})

/** The package each backend type loads. */
const BACKEND_CLIENTS: Record<string, string> = { redis: 'ioredis', kafka: 'kafkajs', mqtt: 'mqtt', 'redis-stream': 'ioredis', 'postgres-outbox': 'pg' }

function typeOf (option: unknown): string | undefined {
  return typeof option === 'object' && option !== null && 'type' in option && typeof option.type === 'string' ? option.type : undefined
}

t.test('the image carries every package the example imports', async (t) => {
  const dockerfile = await read('Dockerfile')
  const pkg = JSON.parse(await read('package.json')) as { name: string, dependencies: Record<string, string>, devDependencies: Record<string, string> }
  const promote = /promote-dependencies\.mjs((?:\s+[@\w/.-]+)+)/.exec(instructions(dockerfile).map((i) => i.args).join('\n'))
  const promoted = (promote?.[1] ?? '').trim().split(/\s+/)
  for (const name of promoted) t.ok(pkg.devDependencies[name], `${name} is a devDependency to promote`)

  const runtime = new Set([...Object.keys(pkg.dependencies), ...promoted, pkg.name])
  const builtins = new Set(builtinModules)
  const imported = new Set<string>()
  for (const file of (await readdir(new URL('example/', root))).filter((f) => f.endsWith('.ts'))) {
    const source = await read(`example/${file}`)
    for (const [, specifier] of source.matchAll(/^import (?!type ).*? from '([^'.][^']*)'/gm)) {
      if (specifier === undefined || specifier.startsWith('node:') || builtins.has(specifier)) continue
      const name = specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : specifier.split('/')[0] as string
      t.ok(runtime.has(name), `example/${file} imports ${name}, which the image installs`)
      imported.add(name)
    }
  }
  t.ok(['fastify', '@fastify/swagger', pkg.name].every((name) => imported.has(name)), 'the scan sees the example\'s imports')

  // The library imports a backend's client only once configured, which no
  // scan of the example sees: these follow from what compose configures.
  const compose = parseDocument(await read('docker-compose.yml')).toJS() as ComposeFile
  const { hub } = readConfig(envOf(compose.services.app))
  const types = [hub.broker, hub.registry, ...(hub.sources ?? [])].map(typeOf).filter((type) => type !== undefined)
  t.same([...new Set(types)].sort(), ['kafka', 'redis'], 'the scan sees the configured backends')
  for (const type of types) {
    const client = BACKEND_CLIENTS[type]
    t.ok(client !== undefined && runtime.has(client), `the ${type} backend's client ${String(client)} is in the image`)
  }

  const ignored = (await read('.dockerignore')).split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'))
  for (const needed of ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'lib', 'example']) {
    t.notOk(ignored.includes(needed), `${needed} is in the build context`)
  }
  for (const heavy of ['node_modules', '.git', '.cache']) t.ok(ignored.includes(heavy), `${heavy} stays out of the build context`)
})

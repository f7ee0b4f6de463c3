import { createRequire } from 'node:module'
import t from 'tap'
import { Ajv, type ValidateFunction } from 'ajv'
import addFormatsModule from 'ajv-formats'
import Fastify from 'fastify'
import { BuiltInClientFrames, ServerFrames } from '../lib/protocol/frames.js'
import {
  ASYNCAPI_CHANNEL,
  CUSTOM_CLIENT_TYPE,
  buildAsyncApiDocument,
  clientMessageKey,
  serverMessageKey,
  type AsyncApiDocument
} from '../lib/http/asyncapi.js'
import { registerAsyncApiRoute } from '../lib/http/asyncapi-route.js'
import { normalizeOptions } from '../lib/options/hub-options.js'
import { Type } from 'typebox'
import { build, connect, TestClient, type Frame } from './helpers.js'

const TOPICS = {
  default: { publish: 'none' as const, schema: Type.Object({ symbol: Type.String(), price: Type.Number() }) },
  namespaces: { chat: { publish: 'subscribers' as const, presence: true, schema: Type.Object({ text: Type.String({ maxLength: 500 }) }) } }
}

const require = createRequire(import.meta.url)
const { version } = require('../package.json') as { version: string }
// @asyncapi/specs ships the official JSON Schema of each AsyncAPI version;
// 3.0.0's is draft-07 with every definition bundled inside.
const asyncApiSchema = require('@asyncapi/specs/schemas/3.0.0.json') as { $schema: string, definitions: Record<string, unknown> }
const DRAFT_07 = 'http://json-schema.org/draft-07/schema'

/**
 * The bundle carries its own copy of the draft-07 meta-schema, which Ajv
 * already has under the same id ("resolves to more than one schema"):
 * compile a copy without it, so Ajv's own meta-schema serves those refs.
 */
function withoutBundledMetaSchema (schema: typeof asyncApiSchema): object {
  const definitions = Object.fromEntries(Object.entries(schema.definitions).filter(([id]) => id !== DRAFT_07))
  return { ...schema, definitions }
}

// ajv-formats is CommonJS: under NodeNext its default import is the module object.
const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv

/** Draft-07 ajv (the default `Ajv` class), with formats such as date-time checked. */
function draft07 (): Ajv {
  const ajv = new Ajv({ strict: false, allErrors: true })
  addFormats(ajv)
  return ajv
}

/** Resolves a local `$ref` like `#/channels/hub/messages/client.ping`. */
function resolve (document: AsyncApiDocument, ref: string): unknown {
  let current: unknown = document
  for (const part of ref.replace(/^#\//, '').split('/')) {
    if (current === null || typeof current !== 'object') return undefined
    current = (current as Record<string, unknown>)[part.replaceAll('~1', '/').replaceAll('~0', '~')]
  }
  return current
}

function refs (value: unknown, found: string[] = []): string[] {
  if (Array.isArray(value)) for (const item of value) refs(item, found)
  else if (value !== null && typeof value === 'object') {
    for (const [key, child] of Object.entries(value)) {
      if (key === '$ref' && typeof child === 'string') found.push(child)
      else refs(child, found)
    }
  }
  return found
}

t.test('every client and server frame type has a message and an operation', async (t) => {
  const document = buildAsyncApiDocument()
  t.equal(document.asyncapi, '3.0.0')
  t.equal(document.info.version, version, 'the package version by default')
  const channel = document.channels[ASYNCAPI_CHANNEL]
  t.equal(channel?.address, '/ws')

  const operations = Object.values(document.operations)
  for (const type of Object.keys(BuiltInClientFrames)) {
    const key = clientMessageKey(type)
    const message = document.components.messages[key]
    t.ok(message, `client frame ${type} is a message`)
    t.same(message?.payload, JSON.parse(JSON.stringify(BuiltInClientFrames[type as keyof typeof BuiltInClientFrames])), `${type}: the payload is its TypeBox schema`)
    t.ok(channel?.messages[key], `${type} is on the channel`)
    t.ok(operations.some((op) => op.action === 'receive' && op.messages.some((m) => m.$ref.endsWith(`/${key}`))), `${type} has a receive operation`)
  }
  for (const type of Object.keys(ServerFrames)) {
    const key = serverMessageKey(type)
    t.same(document.components.messages[key]?.payload, JSON.parse(JSON.stringify(ServerFrames[type as keyof typeof ServerFrames])), `server frame ${type}: the payload is its TypeBox schema`)
    t.ok(channel?.messages[key], `${type} is on the channel`)
    t.ok(operations.some((op) => op.action === 'send' && op.messages.some((m) => m.$ref.endsWith(`/${key}`))), `${type} has a send operation`)
  }
  t.ok(document.components.messages[clientMessageKey(CUSTOM_CLIENT_TYPE)], 'custom types are documented too')
  t.same(document.operations.receivePing?.reply?.messages, [{ $ref: '#/channels/hub/messages/server.pong' }], 'a ping is answered by a pong')
  t.same(document.operations.receiveBroadcast?.reply?.messages.map((m) => m.$ref), ['#/channels/hub/messages/server.ack', '#/channels/hub/messages/server.error'])

  const unresolved = [...new Set(refs(document))].filter((ref) => resolve(document, ref) === undefined)
  t.same(unresolved, [], 'every $ref resolves')
})

t.test('the document validates against the AsyncAPI 3.0.0 JSON Schema', async (t) => {
  t.equal(asyncApiSchema.$schema, DRAFT_07, 'the official schema is draft-07, which the default Ajv class speaks')
  t.ok(asyncApiSchema.definitions[DRAFT_07], 'and bundles a copy of the draft-07 meta-schema')
  const validate = draft07().compile(withoutBundledMetaSchema(asyncApiSchema))
  for (const [name, document] of [
    ['defaults', buildAsyncApiDocument()],
    ['options', buildAsyncApiDocument({ path: '/live', title: 'Chat', version: '9.9.9', description: 'Hi', protocols: ['a.v2'], servers: { local: { host: 'localhost:3000', protocol: 'ws', description: 'dev' } } })],
    ['topics', buildAsyncApiDocument({ topics: normalizeOptions({ topics: TOPICS }).topics })]
  ] as const) {
    const valid = validate(document)
    t.ok(valid, `${name}: valid AsyncAPI 3.0.0`)
    if (valid !== true) t.comment(JSON.stringify(validate.errors?.slice(0, 5), null, 2))
  }
  t.notOk(validate({ ...buildAsyncApiDocument(), asyncapi: '2.6.0' }), 'and the schema is not a pushover: a wrong version')
  t.notOk(validate({ ...buildAsyncApiDocument(), operations: { x: { action: 'publish', channel: { $ref: '#/channels/hub' } } } }), 'a 2.x-style action')
  t.notOk(validate({ ...buildAsyncApiDocument(), channels: { hub: { address: '/ws', subscribe: {} } } }), 'a 2.x-style channel')

  const custom = buildAsyncApiDocument({ path: '/live', title: 'Chat', version: '9.9.9', protocols: ['a.v2'] })
  t.equal(custom.channels[ASYNCAPI_CHANNEL]?.address, '/live')
  t.same(custom.info, { title: 'Chat', version: '9.9.9', description: custom.info.description })
  t.match(custom.info.description, '`a.v2`')
})

t.test('frames a running hub sends validate against the document', async (t) => {
  const document = buildAsyncApiDocument()
  const ajv = draft07()
  const validators = new Map<string, ValidateFunction>()
  const check = (direction: 'client' | 'server', frame: Frame | Record<string, unknown>): void => {
    const type = String(frame.type)
    const key = direction === 'client' ? clientMessageKey(type in BuiltInClientFrames ? type : CUSTOM_CLIENT_TYPE) : serverMessageKey(type)
    let validate = validators.get(key)
    if (validate === undefined) {
      const payload = document.components.messages[key]?.payload
      if (payload === undefined) throw new Error(`no message ${key}`)
      validate = ajv.compile(payload)
      validators.set(key, validate)
    }
    t.ok(validate(frame), `${direction} ${type} frame matches ${key}`)
    if (validate.errors) t.comment(JSON.stringify(validate.errors))
  }
  const send = (client: TestClient, frame: Record<string, unknown>): void => {
    check('client', frame)
    client.send(frame)
  }

  const { url, wsUrl } = await build(t, { announce: true, echo: true })
  const a = await connect(wsUrl)
  const b = new TestClient(wsUrl)
  t.teardown(() => { a.close(); b.close() })
  const welcome = await b.next('welcome')
  check('server', welcome)
  b.clientId = String(welcome.clientId)
  check('server', await a.next('system'))

  send(b, { type: 'subscribe', topic: 'prices', id: 'sub-1' })
  check('server', await b.next('ack'))
  send(a, { type: 'broadcast', message: { text: 'hi' }, id: 1 })
  check('server', await b.next('message'))
  check('server', await a.next('echo'))
  check('server', await a.next('ack'))
  send(a, { type: 'direct', target: b.clientId, message: 'psst' })
  check('server', await b.next('direct'))
  send(a, { type: 'publish', topic: 'prices', message: { symbol: 'ACME', price: 1 } })
  check('server', await b.next('publish'))
  send(a, { type: 'ping', id: 7 })
  check('server', await a.next('pong'))
  send(a, { type: 'direct', target: 'nobody', message: 'x', id: 'd-1' })
  check('server', await a.next('error'))
  send(a, { type: 'unsubscribe', topic: 'prices' })
  send(a, { type: 'roll', sides: 6 })
  check('server', await a.next('error'))

  const pushed = await fetch(`${url}/api/connections/broadcast`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ message: 'from REST' }) })
  t.equal(pushed.status, 200)
  check('server', await b.next('server-broadcast'))
  const toOne = await fetch(`${url}/api/connections/${b.clientId}/send`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ message: 'just you' }) })
  t.equal(toOne.status, 200)
  check('server', await b.next('direct'))

  const checked = new Set([...validators.keys()].filter((key) => key.startsWith('server.')).map((key) => key.slice('server.'.length)))
  for (const type of ['welcome', 'message', 'ack', 'error', 'pong', 'publish', 'direct', 'server-broadcast', 'system', 'echo']) {
    t.ok(checked.has(type), `a real ${type} frame was checked`)
  }

  const ack = document.components.messages[serverMessageKey('ack')]?.payload
  t.notOk(ajv.validate(ack ?? {}, { type: 'ack', timestamp: 'yesterday' }), 'the payload schemas do reject bad frames')
  t.notOk(ajv.validate(document.components.messages[clientMessageKey(CUSTOM_CLIENT_TYPE)]?.payload ?? {}, { type: 'broadcast' }), 'a built-in type is not a custom one')
})

t.test('with topics, a channel per namespace carries that namespace\'s payload schema', async (t) => {
  const document = buildAsyncApiDocument({ topics: normalizeOptions({ topics: TOPICS }).topics })
  const text = JSON.stringify(document)
  t.ok(Object.keys(document.channels).some((id) => id.includes('chat')), 'a channel for the chat namespace')
  t.ok(Object.keys(document.channels).some((id) => id === 'topics'), 'and one for topics without a namespace')
  t.match(text, /"symbol"/, 'the prices schema is in the document')
  t.match(text, /"text"/, 'and the chat schema')
  for (const ref of refs(document)) t.not(resolve(document, ref), undefined, `${ref} resolves`)
})

t.test('GET <prefix>/asyncapi.json serves the document', async (t) => {
  // The hub registers it itself, with its own path and subprotocols.
  const { url } = await build(t, { path: '/live', protocols: ['chat.v2'] })
  const response = await fetch(`${url}/api/asyncapi.json`)
  t.equal(response.status, 200)
  t.match(response.headers.get('content-type'), /^application\/json/)
  const served = await response.json() as AsyncApiDocument
  t.same(served, JSON.parse(JSON.stringify(buildAsyncApiDocument({ path: '/live', protocols: ['chat.v2'] }))))
  t.equal(served.channels[ASYNCAPI_CHANNEL]?.address, '/live')

  const app = Fastify({ logger: false })
  t.teardown(() => app.close())
  registerAsyncApiRoute(app, { prefix: '/v1/', path: '/ws' })
  const trailing = await app.inject({ method: 'GET', url: '/v1/asyncapi.json' })
  t.equal(trailing.statusCode, 200, 'a trailing slash on the prefix is not doubled')
  t.equal(trailing.json<AsyncApiDocument>().asyncapi, '3.0.0')
})

/**
 * The wire protocol as an AsyncAPI 3.0.0 document, built from the same
 * TypeBox schemas that validate client frames, so it cannot drift from the
 * code: a frame type added to `protocol.ts` appears here by itself.
 *
 * The application described is the hub: it `receive`s client frames and
 * `send`s server frames, all on one channel, the WebSocket path.
 */
import { createRequire } from 'node:module'
import type { TSchema } from 'typebox'
import { AnyClientFrame, BuiltInClientFrames, CloseCodes, ErrorCodes, PublishFrameSchema, ServerFrames } from '../protocol/frames.js'
import type { TopicRules, TopicsConfig } from '../options/topic-options.js'

export interface AsyncApiOptions {
  /** The WebSocket path. Default `/ws`. */
  path?: string
  /** Default `fastify-ws-hub WebSocket protocol`. */
  title?: string
  /** Default: the version in fastify-ws-hub's package.json. */
  version?: string
  /** Replaces the default description (Markdown). */
  description?: string
  /** Subprotocols the hub selects from. Default `['ws-hub.v1']`. */
  protocols?: string[]
  /** Servers to list, by name, for example `{ production: { host: 'chat.example.com', protocol: 'wss' } }`; the channel's address is the path. */
  servers?: Record<string, AsyncApiServer>
  /** The hub's `topics` option: a channel per namespace, with its payload schema. */
  topics?: TopicsConfig | null
}

export interface AsyncApiServer {
  host: string
  protocol: 'ws' | 'wss'
  description?: string
}

type JsonSchema = Record<string, unknown>
interface Ref { $ref: string }

export interface AsyncApiMessage {
  name: string
  title: string
  summary: string
  contentType: 'application/json'
  payload: JsonSchema
  correlationId?: { location: string, description: string }
}

export interface AsyncApiOperation {
  action: 'send' | 'receive'
  channel: Ref
  summary: string
  messages: Ref[]
  reply?: { channel: Ref, messages: Ref[] }
}

export interface AsyncApiDocument {
  asyncapi: '3.0.0'
  info: { title: string, version: string, description: string }
  defaultContentType: 'application/json'
  servers?: Record<string, { host: string, protocol: string, description?: string }>
  channels: Record<string, {
    /** null: the topics without a namespace. */
    address: string | null
    title: string
    description: string
    messages: Record<string, Ref>
    parameters?: Record<string, { description: string }>
    bindings?: { ws: { method: 'GET', headers: JsonSchema, bindingVersion: '0.1.0' } }
  }>
  operations: Record<string, AsyncApiOperation>
  components: { messages: Record<string, AsyncApiMessage> }
}

/** The channel's key in `channels`. */
export const ASYNCAPI_CHANNEL = 'hub'
/** Keys of messages in `components.messages` and in the channel: `client.<type>` and `server.<type>`. */
export const clientMessageKey = (type: string): string => `client.${type}`
export const serverMessageKey = (type: string): string => `server.${type}`
/** The message for client types that are not built in, handled by the service. */
export const CUSTOM_CLIENT_TYPE = 'custom'

const CLIENT_SUMMARIES: Record<string, string> = {
  broadcast: 'Every connected client, the sender included, receives a `message` frame.',
  direct: 'To one client (`target`) or to every connection of a user (`user`), exactly one of the two; they receive a `direct` frame. An unknown target is answered with the error `unknown_target`.',
  subscribe: 'Start receiving the topic\'s publishes; answered with `subscribed` (then the `ack`). Refused with `forbidden` or `unknown_namespace` by the topic rules. On a history topic `subscribed` carries the `offset` and `epoch` the client follows from; with `since`, the publications after it come first, then `subscribed` with `recovered: true`, then live ones, none missing or twice; or `recovered: false` with the current position and nothing replayed (too old, another epoch, or more than `maxRecovery` behind).',
  unsubscribe: 'Stop receiving the topic\'s publishes. Idempotent.',
  publish: 'The topic\'s subscribers receive a `publish` frame. The publisher need not be subscribed. With `idempotencyKey`, a key seen in the topic within `idempotencyWindowMs` is not published again; on a history topic the `ack` carries the `offset` and `epoch` (a repeated key: the first publish\'s).',
  history: 'A history topic\'s publications after `since` (at most `limit`), or its last `limit`, answered by a `history` frame carrying the same `id`; reading follows the subscribe rules. A topic without history is answered with the error `history_off`.',
  ping: 'Answered by a `pong` carrying the same `id` (for browsers, which cannot send protocol pings).',
  presence: 'One page of a presence topic\'s members, cluster-wide, answered by a `presence` frame carrying the same `id`. A topic whose rules do not set `presence: true` is answered with the error `presence_off`.',
  [CUSTOM_CLIENT_TYPE]: 'Any other type goes to the service (`onMessage`); without one it is answered with the error `unknown_type`.'
}

const SERVER_SUMMARIES: Record<string, string> = {
  welcome: 'The first frame on every connection: the id the hub gave this client.',
  message: 'A client\'s broadcast. `from` is the sender\'s client id, `fromUser` its authenticated user.',
  direct: 'A direct message. `from` is `"server"` for pushes from the server; `user` is set for messages to a user.',
  publish: 'A publish on a topic this client subscribed to. On a history topic it carries `offset` (+1 per publication) and `epoch`: within an epoch, offsets arrive strictly in order, none missing or twice.',
  history: 'The answer to a `history` frame, with its `id`: `publish` frames in offset order and the topic\'s current `offset` and `epoch`; `complete: false` when not everything after `since` could be given.',
  reset: 'On a history topic: publications up to `offset` could not all be delivered (lost between instances and no longer kept, or history itself was lost and a new `epoch` began). Reload the state, then go on from `offset`.',
  'server-broadcast': 'A broadcast from the server (REST or `messageDispatcher.broadcast`).',
  system: 'A notice such as `Client <id> joined.`, with the `announce` option.',
  echo: 'A copy of what this client broadcast, sent directly or published, with the `echo` option.',
  pong: 'The answer to a `ping`, with its `id`.',
  ack: 'A client frame that carried an `id` was handled.',
  subscribed: 'This connection now receives the topic: its own `subscribe`, or the server\'s (REST, the facade, `authenticate`).',
  unsubscribed: 'This connection no longer receives the topic: its own `unsubscribe`, or the server\'s.',
  presence: 'The answer to a `presence` frame, with its `id`: members in client id order, `clients` and `users` for the whole cluster, and a `cursor` while more pages follow.',
  join: 'On a `joinLeave` topic this client subscribed to: a user\'s first connection joined it, on any instance.',
  leave: 'On a `joinLeave` topic: a user\'s last connection left it (unsubscribed, disconnected, or its instance crashed and its lease ran out).',
  error: `Bad input; the connection stays open. \`id\` is the offending frame's, when it had one. Codes: ${Object.values(ErrorCodes).map((code) => `\`${code}\``).join(', ')}; a service may add its own.`
}

const CORRELATION = {
  location: '$message.payload#/id',
  description: 'A client frame\'s optional `id`, echoed by its `ack`, `pong` or `error`.'
}

const packageJson = createRequire(import.meta.url)('../../package.json') as { version: string }

function defaultDescription (path: string, protocols: readonly string[]): string {
  const closeCodes = Object.entries(CloseCodes).map(([name, code]) => `\`${code}\` ${name}`).join(', ')
  return [
    `JSON text frames over one WebSocket at \`${path}\`. Offer the subprotocol ${protocols.map((p) => `\`${p}\``).join(' or ')}; a browser`,
    'that authenticates adds a `bearer.<token>` entry, which the hub reads and never echoes.',
    '',
    'Every server frame has a `type` and an ISO-8601 `timestamp`. Any client frame may carry an `id`',
    '(a string of 1 to 128 characters, or a number): the hub then answers with an `ack` once the frame is',
    'handled, or with an `error` carrying that `id`; a `ping` is answered by its `pong` instead.',
    '',
    `Close codes: ${closeCodes}.`
  ].join('\n')
}

/** A plain JSON copy: TypeBox schemas may carry symbol keys. */
function plain (schema: TSchema | JsonSchema): JsonSchema {
  return JSON.parse(JSON.stringify(schema)) as JsonSchema
}

function operationId (action: 'send' | 'receive', type: string): string {
  return action + type.split(/[^A-Za-z0-9]+/).map((part) => part.charAt(0).toUpperCase() + part.slice(1)).join('')
}

/** Builds the document. Cheap, but meant to be built once and served as is. */
export function buildAsyncApiDocument (options: AsyncApiOptions = {}): AsyncApiDocument {
  const path = options.path ?? '/ws'
  const protocols = options.protocols ?? ['ws-hub.v1']
  const channelRef: Ref = { $ref: `#/channels/${ASYNCAPI_CHANNEL}` }
  const inChannel = (key: string): Ref => ({ $ref: `#/channels/${ASYNCAPI_CHANNEL}/messages/${key}` })
  const messages: Record<string, AsyncApiMessage> = {}
  const operations: Record<string, AsyncApiOperation> = {}
  const answers = [inChannel(serverMessageKey('ack')), inChannel(serverMessageKey('error'))]

  const customPayload: JsonSchema = {
    allOf: [plain(AnyClientFrame), { properties: { type: { not: { enum: Object.keys(BuiltInClientFrames) } } } }]
  }
  const clientFrames: Array<[string, JsonSchema]> = [
    ...Object.entries(BuiltInClientFrames).map(([type, schema]): [string, JsonSchema] => [type, plain(schema)]),
    [CUSTOM_CLIENT_TYPE, customPayload]
  ]
  for (const [type, payload] of clientFrames) {
    const key = clientMessageKey(type)
    const summary = CLIENT_SUMMARIES[type] ?? `A \`${type}\` frame.`
    messages[key] = { name: type, title: `${type} (client to hub)`, summary, contentType: 'application/json', payload, correlationId: CORRELATION }
    operations[operationId('receive', type)] = {
      action: 'receive',
      channel: channelRef,
      summary,
      messages: [inChannel(key)],
      reply: { channel: channelRef, messages: type === 'ping' ? [inChannel(serverMessageKey('pong'))] : type === 'presence' || type === 'history' ? [inChannel(serverMessageKey(type)), inChannel(serverMessageKey('error'))] : answers }
    }
  }

  for (const [type, schema] of Object.entries(ServerFrames)) {
    const key = serverMessageKey(type)
    const summary = SERVER_SUMMARIES[type] ?? `A \`${type}\` frame.`
    const payload = plain(schema)
    const message: AsyncApiMessage = { name: type, title: `${type} (hub to client)`, summary, contentType: 'application/json', payload }
    if (Object.hasOwn(payload.properties as object, 'id')) message.correlationId = CORRELATION
    messages[key] = message
    operations[operationId('send', type)] = { action: 'send', channel: channelRef, summary, messages: [inChannel(key)] }
  }

  const topicChannels = namespaceChannels(options.topics ?? null, messages, operations)

  const document: AsyncApiDocument = {
    asyncapi: '3.0.0',
    info: {
      title: options.title ?? 'fastify-ws-hub WebSocket protocol',
      version: options.version ?? packageJson.version,
      description: options.description ?? defaultDescription(path, protocols)
    },
    defaultContentType: 'application/json',
    channels: {
      [ASYNCAPI_CHANNEL]: {
        address: path,
        title: 'The hub\'s WebSocket',
        description: 'One connection carries every frame in both directions; topics are a field of the frames, not channels.',
        messages: Object.fromEntries(Object.keys(messages).map((key) => [key, { $ref: `#/components/messages/${key}` }])),
        bindings: {
          ws: {
            method: 'GET',
            headers: {
              type: 'object',
              properties: {
                'Sec-WebSocket-Protocol': {
                  type: 'string',
                  description: `${protocols.join(', ')}; plus \`bearer.<token>\` when the hub authenticates with a subprotocol token.`
                }
              }
            },
            bindingVersion: '0.1.0'
          }
        }
      },
      ...topicChannels
    },
    operations,
    components: { messages }
  }
  if (options.servers !== undefined) {
    document.servers = Object.fromEntries(Object.entries(options.servers).map(([name, server]) => [name, {
      host: server.host,
      protocol: server.protocol,
      ...(server.description === undefined ? {} : { description: server.description })
    }]))
  }
  return document
}

/**
 * A channel per namespace (and one for topics under `default`), each with
 * the `publish` frames its subscribers receive and, unless only the server
 * publishes there, the `publish` frame a client sends, their `message`
 * narrowed to the namespace's schema. The frames travel on the hub's one
 * WebSocket; these channels say what each family of topics carries.
 */
function namespaceChannels (topics: TopicsConfig | null, messages: Record<string, AsyncApiMessage>, operations: Record<string, AsyncApiOperation>): AsyncApiDocument['channels'] {
  if (topics === null) return {}
  const channels: AsyncApiDocument['channels'] = {}
  const families: Array<[string | null, TopicRules]> = [[null, topics.default], ...(topics.namespaces ?? [])]
  for (const [namespace, rules] of families) {
    const id = namespace === null ? 'topics' : `topics.${namespace.replace(/[^\w.-]/g, '_')}`
    const ref = (key: string): Ref => ({ $ref: `#/channels/${id}/messages/${key}` })
    const narrowed = (frame: JsonSchema): JsonSchema => rules.schema === undefined
      ? frame
      : { ...frame, properties: { ...(frame.properties as JsonSchema), message: plain(rules.schema) } }
    const what = namespace === null ? 'topics without a namespace' : `topics \`${namespace}:<name>\``
    const channelMessages: Record<string, Ref> = {}
    const serverKey = `${id}.server.publish`
    messages[serverKey] = { name: 'publish', title: `publish (hub to client), ${what}`, summary: `A publish on one of the ${what}.`, contentType: 'application/json', payload: narrowed(plain(ServerFrames.publish)) }
    channelMessages.serverPublish = { $ref: `#/components/messages/${serverKey}` }
    operations[`send${suffix(id)}Publish`] = { action: 'send', channel: { $ref: `#/channels/${id}` }, summary: `Publishes on ${what}.`, messages: [ref('serverPublish')] }
    if (rules.publish !== 'none') {
      const clientKey = `${id}.client.publish`
      messages[clientKey] = { name: 'publish', title: `publish (client to hub), ${what}`, summary: `A client publishes on one of the ${what} (rule: ${rules.publish}).`, contentType: 'application/json', payload: narrowed(plain(PublishFrameSchema)), correlationId: CORRELATION }
      channelMessages.clientPublish = { $ref: `#/components/messages/${clientKey}` }
      operations[`receive${suffix(id)}Publish`] = { action: 'receive', channel: { $ref: `#/channels/${id}` }, summary: `A client publishes on ${what}.`, messages: [ref('clientPublish')] }
    }
    channels[id] = {
      address: namespace === null ? null : `${namespace}:{name}`,
      title: namespace === null ? 'Topics without a namespace' : `Namespace ${namespace}`,
      description: `Subscribe: ${rules.subscribe}; publish: ${rules.publish}; presence: ${String(rules.presence)}; join/leave: ${String(rules.joinLeave)}.${rules.schema === undefined ? '' : ' Every message published here matches the payload\'s `message` schema.'}`,
      messages: channelMessages,
      ...(namespace === null ? {} : { parameters: { name: { description: 'The rest of the topic name, after the namespace and its `:`.' } } })
    }
  }
  return channels
}

function suffix (id: string): string {
  return id.split(/[^A-Za-z0-9]+/).map((part) => part.charAt(0).toUpperCase() + part.slice(1)).join('')
}

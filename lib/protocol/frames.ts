/**
 * The wire protocol: JSON text frames. These TypeBox schemas validate what
 * clients send, type the server code, and are the protocol's documentation.
 */
import { Type, type Static, type TSchema } from 'typebox'
import { Compile } from 'typebox/compile'

// Fastify's default maxParamLength, so every topic can also be a REST path segment.
export const MAX_TOPIC_LENGTH = 100
export const MAX_ID_LENGTH = 128

/** A correlation id the client may attach; the server echoes it in `ack` or `error`. */
export const MessageId = Type.Union([
  Type.String({ minLength: 1, maxLength: MAX_ID_LENGTH }),
  Type.Number()
])
/** Letters, digits and `_ . : @ / -`: nothing that needs escaping in a URL path, a log line or a Redis key. */
export const Topic = Type.String({ minLength: 1, maxLength: MAX_TOPIC_LENGTH, pattern: '^[A-Za-z0-9_.:@/-]+$' })
export const UserId = Type.String({ minLength: 1, maxLength: MAX_ID_LENGTH })
export const ClientId = Type.String({ minLength: 1, maxLength: MAX_ID_LENGTH })
/** Any JSON value. */
export const Payload = Type.Unknown()
/** Where a client stands in a history topic: the last offset it has, in that epoch. */
export const StreamPositionSchema = Type.Object({
  offset: Type.Integer({ minimum: 0, description: 'The last offset the client has (0: none)' }),
  epoch: Type.String({ minLength: 1, maxLength: MAX_ID_LENGTH, description: 'The stream it is from; another epoch cannot be recovered' })
})
const Offset = Type.Integer({ minimum: 0, description: 'The position in the topic\'s history: +1 per publication, 0 before the first' })
const Epoch = Type.String({ description: 'The unbroken stream the offset belongs to; it changes when history was lost' })
export const IdempotencyKey = Type.String({ minLength: 1, maxLength: MAX_ID_LENGTH, description: 'A publish whose key was seen in the topic within idempotencyWindowMs is not published again' })
export const MAX_HISTORY_LIMIT = 1000

// ---- client -> server ----

export const BroadcastFrameSchema = Type.Object({
  type: Type.Literal('broadcast'),
  message: Payload,
  id: Type.Optional(MessageId)
})
/** To one client (`target`) or to every connection of a user (`user`): exactly one of the two. */
export const DirectFrameSchema = Type.Object({
  type: Type.Literal('direct'),
  target: Type.Optional(ClientId),
  user: Type.Optional(UserId),
  message: Payload,
  id: Type.Optional(MessageId)
})
export const SubscribeFrameSchema = Type.Object({
  type: Type.Literal('subscribe'),
  topic: Topic,
  since: Type.Optional(Type.Object(StreamPositionSchema.properties, { description: 'A history topic: replay what came after this position first (recovery)' })),
  id: Type.Optional(MessageId)
})
export const UnsubscribeFrameSchema = Type.Object({
  type: Type.Literal('unsubscribe'),
  topic: Topic,
  id: Type.Optional(MessageId)
})
export const PublishFrameSchema = Type.Object({
  type: Type.Literal('publish'),
  topic: Topic,
  message: Payload,
  idempotencyKey: Type.Optional(IdempotencyKey),
  id: Type.Optional(MessageId)
})
export const PingFrameSchema = Type.Object({
  type: Type.Literal('ping'),
  id: Type.Optional(MessageId)
})
/** A page of a presence topic's members; the answer is a `presence` frame carrying the `id`. */
export const PresenceFrameSchema = Type.Object({
  type: Type.Literal('presence'),
  topic: Topic,
  limit: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000, description: 'Members per page, default 100; 0 answers the counts alone' })),
  cursor: Type.Optional(Type.String({ minLength: 1, maxLength: MAX_ID_LENGTH, description: 'From the previous page' })),
  id: Type.Optional(MessageId)
})
/** Publications of a history topic; the answer is a `history` frame carrying the `id`. */
export const HistoryFrameSchema = Type.Object({
  type: Type.Literal('history'),
  topic: Topic,
  since: Type.Optional(Type.Object(StreamPositionSchema.properties, { description: 'The publications after this position; left out: the last `limit` kept' })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_HISTORY_LIMIT, description: 'At most this many, default 100' })),
  id: Type.Optional(MessageId)
})
/** Every client frame: an object with a string `type`. Types not built in go to the service. */
export const AnyClientFrame = Type.Object({
  type: Type.String({ minLength: 1, maxLength: 64 }),
  id: Type.Optional(MessageId)
})

export const BuiltInClientFrames = {
  broadcast: BroadcastFrameSchema,
  direct: DirectFrameSchema,
  subscribe: SubscribeFrameSchema,
  unsubscribe: UnsubscribeFrameSchema,
  publish: PublishFrameSchema,
  ping: PingFrameSchema,
  presence: PresenceFrameSchema,
  history: HistoryFrameSchema
} as const

export type BuiltInType = keyof typeof BuiltInClientFrames
export type ClientFrame = Static<typeof AnyClientFrame> & Record<string, unknown>
export type BroadcastFrame = Static<typeof BroadcastFrameSchema>
export type DirectFrame = Static<typeof DirectFrameSchema>
export type SubscribeFrame = Static<typeof SubscribeFrameSchema>
export type UnsubscribeFrame = Static<typeof UnsubscribeFrameSchema>
export type PublishFrame = Static<typeof PublishFrameSchema>
export type PresenceFrame = Static<typeof PresenceFrameSchema>
export type HistoryFrame = Static<typeof HistoryFrameSchema>

// ---- server -> client ----

const Timestamp = Type.String({ format: 'date-time' })
const MemberUser = Type.Union([UserId, Type.Null()], { description: 'null for an anonymous connection' })
export const PresenceMemberSchema = Type.Object({
  clientId: ClientId,
  userId: MemberUser,
  info: Type.Optional(Type.Unknown({ description: 'What `authenticate` returned as `info` (at most 1024 bytes of JSON)' }))
})

export const ServerFrames = {
  welcome: Type.Object({ type: Type.Literal('welcome'), clientId: ClientId, userId: Type.Optional(UserId), timestamp: Timestamp }),
  message: Type.Object({ type: Type.Literal('message'), from: Type.String(), fromUser: Type.Optional(Type.String()), message: Payload, timestamp: Timestamp }),
  direct: Type.Object({ type: Type.Literal('direct'), from: Type.String(), fromUser: Type.Optional(Type.String()), user: Type.Optional(Type.String()), message: Payload, timestamp: Timestamp }),
  /** `offset` and `epoch` on a history topic's publications. */
  publish: Type.Object({ type: Type.Literal('publish'), topic: Topic, from: Type.String(), fromUser: Type.Optional(Type.String()), message: Payload, offset: Type.Optional(Offset), epoch: Type.Optional(Epoch), timestamp: Timestamp }),
  'server-broadcast': Type.Object({ type: Type.Literal('server-broadcast'), message: Payload, timestamp: Timestamp }),
  system: Type.Object({ type: Type.Literal('system'), message: Type.String(), timestamp: Timestamp }),
  batch: Type.Object({
    type: Type.Literal('batch'),
    messages: Type.Array(Type.Object({ type: Type.String() }, { additionalProperties: true }), { description: 'Frames of the batch window, in order; only for clients that opted in' }),
    timestamp: Timestamp
  }),
  echo: Type.Object({ type: Type.Literal('echo'), message: Payload, timestamp: Timestamp }),
  pong: Type.Object({ type: Type.Literal('pong'), id: Type.Optional(MessageId), timestamp: Timestamp }),
  /** A publish into a history topic is acked with its `offset` and `epoch` (a duplicate key: the first publish's). */
  ack: Type.Object({ type: Type.Literal('ack'), id: MessageId, offset: Type.Optional(Offset), epoch: Type.Optional(Epoch), timestamp: Timestamp }),
  /**
   * This connection now receives the topic: its own `subscribe`, or the
   * server's (facade, REST, `authenticate`). On a history topic: `offset`
   * and `epoch` it follows from; `recovered` when the subscribe had `since`.
   */
  subscribed: Type.Object({
    type: Type.Literal('subscribed'),
    topic: Topic,
    offset: Type.Optional(Offset),
    epoch: Type.Optional(Epoch),
    recovered: Type.Optional(Type.Boolean({ description: 'true: what came after `since` was sent before this frame; false: it could not be (too old, another epoch, more than maxRecovery), nothing was replayed, reload' })),
    timestamp: Timestamp
  }),
  /** The answer to a `history` frame, with its `id`: publish frames in offset order, and the topic's current position. */
  history: Type.Object({
    type: Type.Literal('history'),
    topic: Topic,
    publications: Type.Array(Type.Object({ type: Type.Literal('publish') }, { additionalProperties: true }), { description: 'publish frames, as subscribers received them' }),
    offset: Offset,
    epoch: Epoch,
    complete: Type.Boolean({ description: 'false: what came after `since` could not be given (older than kept, another epoch, or more than `limit`)' }),
    id: Type.Optional(MessageId),
    timestamp: Timestamp
  }),
  /** A history topic's publications up to `offset` could not all be delivered (lost between instances and no longer in history, or history was lost): reload, then go on from here. */
  reset: Type.Object({ type: Type.Literal('reset'), topic: Topic, offset: Offset, epoch: Epoch, timestamp: Timestamp }),
  /** This connection no longer receives the topic: its own `unsubscribe`, or the server's. */
  unsubscribed: Type.Object({ type: Type.Literal('unsubscribed'), topic: Topic, timestamp: Timestamp }),
  /** The answer to a `presence` frame: one page of members, and both counts for the whole cluster. */
  presence: Type.Object({
    type: Type.Literal('presence'),
    topic: Topic,
    members: Type.Array(PresenceMemberSchema),
    clients: Type.Integer({ minimum: 0, description: 'Connections in the topic, cluster-wide' }),
    users: Type.Integer({ minimum: 0, description: 'Distinct users among them; an anonymous connection counts as one' }),
    cursor: Type.Optional(Type.String({ description: 'Send it back for the next page; absent on the last' })),
    id: Type.Optional(MessageId),
    timestamp: Timestamp
  }),
  /** A user's first connection subscribed to a `joinLeave` topic, on any instance. */
  join: Type.Object({ type: Type.Literal('join'), topic: Topic, clientId: ClientId, userId: MemberUser, timestamp: Timestamp }),
  /** A user's last connection left a `joinLeave` topic: unsubscribed, disconnected, or its instance crashed. */
  leave: Type.Object({ type: Type.Literal('leave'), topic: Topic, clientId: ClientId, userId: MemberUser, timestamp: Timestamp }),
  error: Type.Object({
    type: Type.Literal('error'),
    code: Type.String(),
    message: Type.String(),
    id: Type.Optional(MessageId),
    timestamp: Timestamp
  })
} as const

export type ServerFrameType = keyof typeof ServerFrames
export type ServerFrame = { [K in ServerFrameType]: Static<typeof ServerFrames[K]> }[ServerFrameType]
/** A frame before the server stamps it; custom service frames are allowed too. */
export type OutgoingFrame = { type: string, [key: string]: unknown }

/** Error codes sent in `{"type":"error","code":...}` frames. */
export const ErrorCodes = {
  invalidJson: 'invalid_json',
  invalidMessage: 'invalid_message',
  unknownType: 'unknown_type',
  unknownTarget: 'unknown_target',
  /** The cluster state cannot say whether a `direct` target exists (the registry is down or hangs); try again later. */
  unavailable: 'unavailable',
  unsupportedBinary: 'unsupported_binary',
  rateLimited: 'rate_limited',
  tooManyTopics: 'too_many_topics',
  serviceError: 'service_error',
  /** A topic rule, `authorize`, or `clientBroadcast`/`clientDirect: false` refused the action; nothing changed. */
  forbidden: 'forbidden',
  /** The topic's namespace (the text before its first `:`) is not declared in `topics.namespaces`. */
  unknownNamespace: 'unknown_namespace',
  /** A `presence` request for a topic whose rules do not set `presence: true`. */
  presenceOff: 'presence_off',
  /** A `history` request for a topic whose rules keep no history. */
  historyOff: 'history_off'
} as const

/** Close codes the hub uses. 4000-4999 are application codes (RFC 6455 7.4.2). */
export const CloseCodes = {
  goingAway: 1001,
  policyViolation: 1008,
  messageTooBig: 1009,
  /** This instance lost the slot the connection held (a lapsed registry lease) and it no longer fits the limits; reconnect later. */
  tryAgainLater: 1013,
  closedByServer: 4000,
  slowConsumer: 4008
} as const

const compiledBuiltIns = Object.fromEntries(
  Object.entries(BuiltInClientFrames).map(([type, schema]) => [type, Compile(schema as TSchema)])
) as Record<BuiltInType, ReturnType<typeof Compile>>
const compiledAny = Compile(AnyClientFrame)

export function isBuiltInType (type: string): type is BuiltInType {
  return Object.hasOwn(BuiltInClientFrames, type)
}

export type Validation = { ok: true } | { ok: false, error: string }

/**
 * Whether a parsed value nests deeper than `max`, walked without recursion
 * so a hostile `[[[[...]]]]` cannot overflow the stack here.
 */
export function nestsDeeperThan (value: unknown, max: number): boolean {
  const stack: Array<[unknown, number]> = [[value, 0]]
  while (stack.length > 0) {
    const [current, depth] = stack.pop() as [unknown, number]
    if (current === null || typeof current !== 'object') continue
    if (depth >= max) return true
    for (const child of Object.values(current)) {
      if (child !== null && typeof child === 'object') stack.push([child, depth + 1])
    }
  }
  return false
}

function explain (checker: ReturnType<typeof Compile>, value: unknown): string {
  const first = [...checker.Errors(value)][0]
  if (first === undefined) return 'invalid message'
  const where = first.instancePath === '' ? 'message' : first.instancePath.slice(1).replaceAll('/', '.')
  return `${where} ${first.message}`
}

/** Checks the envelope every frame shares: an object with a string `type`. */
export function validateEnvelope (value: unknown): Validation {
  if (compiledAny.Check(value)) return { ok: true }
  return { ok: false, error: explain(compiledAny, value) }
}

export function validateBuiltIn (type: BuiltInType, value: unknown): Validation {
  const checker = compiledBuiltIns[type]
  if (checker.Check(value)) return { ok: true }
  return { ok: false, error: explain(checker, value) }
}

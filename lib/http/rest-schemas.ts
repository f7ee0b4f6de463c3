/** TypeBox schemas of the REST push API: they validate input and feed Swagger. */
import { Type, type Static } from 'typebox'
import { ClientId, IdempotencyKey, MAX_HISTORY_LIMIT, PresenceMemberSchema, ServerFrames, Topic, UserId } from '../protocol/frames.js'

export const ConnectionInfoSchema = Type.Object({
  id: Type.String(),
  ip: Type.String(),
  userId: Type.Union([Type.String(), Type.Null()]),
  topics: Type.Array(Type.String()),
  connectedAt: Type.String({ format: 'date-time' }),
  instanceId: Type.String({ description: 'The hub instance holding the socket' })
}, { $id: 'WsHubConnection' })

export const ErrorSchema = Type.Object({
  statusCode: Type.Integer(),
  error: Type.String(),
  code: Type.Optional(Type.String()),
  message: Type.String()
}, { $id: 'WsHubError' })

// Optional: a caller may leave them out, and the defaults apply.
export const ListQuery = Type.Object({
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
  offset: Type.Optional(Type.Integer({ minimum: 0, default: 0 }))
})

export const ConnectionList = Type.Object({
  count: Type.Integer({ description: 'All connections, not just this page' }),
  connections: Type.Array(ConnectionInfoSchema),
  unreachableInstances: Type.Optional(Type.Array(Type.String(), { description: 'Instances that did not describe their connections in time; theirs are listed with empty topics' }))
})

export const PresenceQuerySchema = Type.Object({
  limit: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000, default: 100, description: '0: the counts alone' })),
  cursor: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: 'The previous page\'s cursor' }))
})

export const PresenceStatsSchema = Type.Object({
  clients: Type.Integer({ minimum: 0, description: 'Connections in the topic, cluster-wide' }),
  users: Type.Integer({ minimum: 0, description: 'Distinct users among them; an anonymous connection counts as one' })
})

export const PresencePageSchema = Type.Object({
  members: Type.Array(PresenceMemberSchema),
  clients: PresenceStatsSchema.properties.clients,
  users: PresenceStatsSchema.properties.users,
  cursor: Type.Optional(Type.String({ description: 'Pass it back for the next page; absent on the last' }))
})

export const IdParams = Type.Object({ id: ClientId })
export const TopicParams = Type.Object({ topic: Topic })
export const UserParams = Type.Object({ userId: UserId })
export const ClientTopicParams = Type.Object({ id: ClientId, topic: Topic })
export const UserTopicParams = Type.Object({ userId: UserId, topic: Topic })

/**
 * Any JSON except null and the empty string: an empty push is a caller's bug.
 * `const`, not `type: 'null'`: Fastify's Ajv coerces types, and would read
 * 0 and false as null.
 */
export const PushBody = Type.Object({
  message: Type.Unsafe<unknown>({
    not: { anyOf: [{ const: null }, { const: '' }] },
    description: 'Any JSON value except null and ""'
  })
})

export const DeliveryResponse = Type.Object({
  recipients: Type.Integer({ description: 'Clients of the answering instance that were sent the message' }),
  remoteInstances: Type.Integer({ description: 'Other hub instances the message was handed to' })
})

/** A publish may carry a key: a retry with the same key within idempotencyWindowMs is not published again. */
export const PublishBody = Type.Object({
  message: PushBody.properties.message,
  idempotencyKey: Type.Optional(IdempotencyKey)
})

export const PublishResponse = Type.Object({
  ...DeliveryResponse.properties,
  offset: Type.Optional(Type.Integer({ minimum: 0, description: 'A history topic: the publication\'s offset (a repeated key: the first publish\'s)' })),
  epoch: Type.Optional(Type.String({ description: 'A history topic: the epoch of that offset' }))
})

export const HistoryQuery = Type.Object({
  sinceOffset: Type.Optional(Type.Integer({ minimum: 0, description: 'The publications after this offset; with `epoch`' })),
  epoch: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_HISTORY_LIMIT, default: 100 }))
})

export const HistoryResponse = Type.Object({
  publications: Type.Array(ServerFrames.publish, { description: 'publish frames in offset order, as subscribers received them' }),
  offset: Type.Integer({ minimum: 0, description: 'The topic\'s current offset' }),
  epoch: Type.String(),
  complete: ServerFrames.history.properties.complete
})

const SourceState = Type.Union([Type.Literal('up'), Type.Literal('paused'), Type.Literal('down')], {
  description: '`paused` while the hub cannot take publications (the transport, registry or history store is down): the source holds what it read and reads no more; `down` while its service is unreachable'
})

export const HealthSchema = Type.Object({
  status: Type.Union([Type.Literal('ok'), Type.Literal('degraded')], { description: '`degraded` while the broker, the registry or an event source is down' }),
  instanceId: Type.String(),
  broker: Type.Union([Type.Literal('none'), Type.Literal('up'), Type.Literal('down')]),
  registry: Type.Union([Type.Literal('up'), Type.Literal('down')], { description: 'The cluster state (limits and directory); `down` while it is unreachable or hangs, when handshakes are refused' }),
  connections: Type.Integer(),
  sources: Type.Array(Type.Object({ name: Type.String(), type: Type.String(), state: SourceState }), { description: 'The event sources of this instance' })
})
export type HealthReport = Static<typeof HealthSchema>

export const LiveSchema = Type.Object({ status: Type.Literal('ok') })

const Count = Type.Integer({ minimum: 0 })
const BadRecords = Type.Object({
  invalid_json: Count,
  map_failed: Count,
  invalid_target: Count,
  unknown_topic: Count,
  invalid_message: Count
}, { description: 'Bad records skipped, by reason' })

export const SourceStatusSchema = Type.Object({
  name: Type.String(),
  type: Type.String(),
  state: SourceState,
  active: Type.Boolean({ description: 'false while another instance holds an `ordered` source\'s lease' }),
  recordsIn: Type.Integer({ minimum: 0, description: 'Records the hub took: published, filtered, skipped or dead-lettered (a redelivered record counts again)' }),
  published: Count,
  filtered: Type.Integer({ minimum: 0, description: 'Records `map` returned null for' }),
  skipped: BadRecords,
  deadLettered: Count,
  lag: Type.Union([Type.Integer(), Type.Null()], { description: 'Records waiting in the service (Kafka consumer lag, stream entries undelivered and pending, outbox rows); null when unknown' })
})

export const StatsSchema = Type.Object({
  instanceId: Type.String(),
  connections: Count,
  handshakes: Type.Object({
    accepted: Count,
    rejectedOrigin: Count,
    rejectedHandshakeRate: Count,
    rejectedIpLimit: Count,
    rejectedTotalLimit: Count,
    rejectedUnauthenticated: Count,
    rejectedUserLimit: Count,
    rejectedRegistryDown: Count,
    abortedBeforeUpgrade: Count
  }),
  messagesIn: Count,
  messagesOut: Count,
  bytesOut: Count,
  errorsSent: Count,
  serviceErrors: Count,
  rateLimited: Count,
  conflatedDrops: Count,
  floodCloses: Count,
  revalidationCloses: Count,
  slowConsumerCloses: Count,
  deadSocketsRemoved: Count,
  heartbeatTerminations: Count,
  brokerPublishFailures: Count,
  remoteEnvelopesIn: Count,
  /** Client input that broke the protocol: malformed frames answered with an error, and framing errors ws closed the socket for. */
  protocolViolations: Count,
  /** Envelopes from other instances older than `maxEnvelopeAgeMs` on arrival, dropped (also in `remoteEnvelopesIn`). */
  staleEnvelopesDropped: Count,
  brokerState: Type.Union([Type.Literal('none'), Type.Literal('up'), Type.Literal('down')]),
  registryState: Type.Union([Type.Literal('up'), Type.Literal('down')]),
  sources: Type.Array(SourceStatusSchema)
})

/** Counters of one instance, as `stats()` and `GET /stats` report them. */
export type HubStats = Static<typeof StatsSchema>

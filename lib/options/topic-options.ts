/**
 * The `topics`, `authorize`, `clientBroadcast` and `clientDirect` options:
 * who may read and write which topics. Declared here once, with their
 * defaults; `lib/topics/topic-policy.ts` compiles them at register time.
 */
import Type, { type Static, type TSchema } from 'typebox'
import type { Authorize } from './hooks.js'
import { MAX_TOPIC_LENGTH } from '../protocol/frames.js'
import { opaque, OptionSchema, withDefault, type Filled } from './normalize.js'

export const SUBSCRIBE_RULES = ['all', 'authenticated', 'owner', 'none'] as const
export const PUBLISH_RULES = ['all', 'authenticated', 'subscribers', 'none'] as const

const positive = Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER, errorMessage: 'must be an integer of at least 1' })

/** What a history topic keeps: its last `size` publications, none older than `ttlMs`. */
export const HistoryRuleSchema = Type.Object({
  size: positive,
  ttlMs: positive
}, { additionalProperties: false })

/**
 * The rules of one namespace. An object of named fields rather than a
 * string shorthand, so a new rule is one more field here (unknown fields
 * are refused, so a typo never passes silently).
 */
export const TopicRulesSchema = Type.Object({
  /** `owner`: a client may subscribe to `<namespace>:<its userId>` only. */
  subscribe: withDefault(Type.Enum(SUBSCRIBE_RULES), 'all'),
  /** `subscribers`: only clients subscribed to the topic; `none`: only the server (facade, REST). */
  publish: withDefault(Type.Enum(PUBLISH_RULES), 'all'),
  presence: withDefault(Type.Boolean(), false),
  /**
   * `true` (or `'user'`): a user joins with its first connection to the
   * topic, on any instance, and leaves with its last. `'connection'`: every
   * connection joins and leaves on its own (a second tab is announced too).
   */
  joinLeave: withDefault(Type.Union([Type.Boolean(), Type.Literal('user'), Type.Literal('connection')]), false),
  /**
   * A TypeBox (or plain JSON) schema every message published into the
   * topic must match, on every path. Kept by reference: TypeBox schemas
   * carry what a copy would lose.
   */
  schema: Type.Optional(opaque<TSchema>(Type.Object({}))),
  /**
   * Keep the topic's recent publications, numbered by offset, so a client
   * that reconnects recovers what it missed. `false`: no history.
   */
  history: withDefault(Type.Union([Type.Literal(false), HistoryRuleSchema]), false)
}, { additionalProperties: false })

/** Letters, digits and `_ . @ / -`: a topic's characters, less the `:` that ends a namespace. */
const NamespaceName = Type.String({ pattern: `^[A-Za-z0-9_.@/-]{1,${MAX_TOPIC_LENGTH - 1}}$` })

export const TopicsSchema = Type.Object({
  /** Rules of topics with no `:`, and of every topic when `namespaces` is left out. */
  default: withDefault(TopicRulesSchema, {}),
  /** With it, a topic whose namespace is not listed is refused (`unknown_namespace`). */
  namespaces: Type.Optional(Type.Record(NamespaceName, TopicRulesSchema, { additionalProperties: false }))
}, { additionalProperties: false })

/** The options of this module, spread into the hub's option schema. */
export const PermissionOptions = {
  /** Left out: every topic is open to everyone, as before namespaces existed. */
  topics: Type.Optional(TopicsSchema),
  /** Runs after the rules, for finer decisions; false or a throw refuses with `forbidden`. */
  authorize: Type.Optional(opaque<Authorize>(Type.Function([], Type.Unknown()))),
  /** false: a client's `broadcast` is refused with `forbidden` (the server still broadcasts). */
  clientBroadcast: withDefault(Type.Boolean(), true),
  /** false: a client's `direct` is refused with `forbidden` (the server still sends). */
  clientDirect: withDefault(Type.Boolean(), true)
}

/** What users write for `topics`. */
export type TopicsOption = Static<typeof TopicsSchema>
/** One namespace's rules as users write them. */
export type TopicRulesOption = Static<typeof TopicRulesSchema>
/** One namespace's rules with every default filled in. */
export type TopicRules = Filled<typeof TopicRulesSchema>
/** A topic's `history` rule: `{ size, ttlMs }` (structurally a `HistoryRetention`). */
export type HistoryRule = Static<typeof HistoryRuleSchema>

export interface TopicsConfig {
  default: TopicRules
  /** null: no `namespaces`, so every topic follows `default`. */
  namespaces: ReadonlyMap<string, TopicRules> | null
}

const rules = new OptionSchema(TopicRulesSchema)

/**
 * Fills the defaults of every namespace's rules: the hub's schema checks a
 * record's values but, being keyed by pattern, does not default them.
 */
export function normalizeTopics (topics: Filled<typeof TopicsSchema> | undefined): TopicsConfig | null {
  if (topics === undefined) return null
  const namespaces = topics.namespaces === undefined
    ? null
    : new Map(Object.entries(topics.namespaces).map(([name, given]) => [name, rules.normalize(given, `topics.namespaces.${name}`)]))
  return { default: topics.default, namespaces }
}

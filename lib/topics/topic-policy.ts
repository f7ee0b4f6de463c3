import { Compile, type Validator } from 'typebox/compile'
import type { TSchema } from 'typebox'
import { OptionsError } from '../errors.js'
import { ErrorCodes } from '../protocol/frames.js'
import type { HistoryRule, TopicRules, TopicsConfig } from '../options/topic-options.js'

/** The rules that apply to one topic, as other components read them (presence, join/leave). */
export interface TopicRuleView {
  /** The declared namespace, or null for a topic under `default`. */
  readonly namespace: string | null
  readonly subscribe: TopicRules['subscribe']
  readonly publish: TopicRules['publish']
  readonly presence: boolean
  readonly joinLeave: boolean | 'user' | 'connection'
  /** What the topic's history keeps; false: none. */
  readonly history: Readonly<HistoryRule> | false
}

/** Why a client's action was refused: the wire code and what to tell it. */
export interface Refusal {
  code: typeof ErrorCodes.forbidden | typeof ErrorCodes.unknownNamespace
  message: string
}

/** The one thing about a client the rules look at. */
export interface Actor {
  readonly userId: string | null
}

interface Compiled extends TopicRuleView {
  /** null when the namespace has no schema: a publish then costs nothing more. */
  readonly validator: Validator | null
}

const OPEN: Compiled = Object.freeze({ namespace: null, subscribe: 'all', publish: 'all', presence: false, joinLeave: false, history: false, validator: null })

/**
 * The `topics` option compiled once, at register time: a map lookup by
 * namespace and a comparison per check, and a compiled validator per
 * schema. Without the option every topic is open, as before namespaces.
 * Refusals are values (no throw, nothing allocated when allowed).
 */
export class TopicPolicy {
  readonly #default: Compiled
  readonly #namespaces: ReadonlyMap<string, Compiled> | null

  constructor (config: TopicsConfig | null) {
    this.#default = config === null ? OPEN : compile(null, config.default)
    this.#namespaces = config?.namespaces == null
      ? null
      : new Map([...config.namespaces].map(([name, rules]) => [name, compile(name, rules)]))
  }

  /**
   * The rules of a topic; null when `namespaces` is set and the topic's
   * namespace is not declared.
   */
  rulesFor (topic: string): TopicRuleView | null {
    return this.#lookup(topic)
  }

  /** Whether a client may subscribe; null when it may. */
  subscribeRefusal (actor: Actor, topic: string): Refusal | null {
    const rules = this.#lookup(topic)
    if (rules === null) return unknownNamespace(topic)
    switch (rules.subscribe) {
      case 'all': return null
      case 'authenticated': return actor.userId === null ? forbidden(`subscribing to ${topic} needs an authenticated user`) : null
      case 'owner':
        // `<namespace>:<userId>` exactly: the namespace's rules apply, so the
        // topic starts with it, and what follows must be this user's id.
        return actor.userId !== null && rules.namespace !== null && topic.length === rules.namespace.length + 1 + actor.userId.length && topic.endsWith(actor.userId)
          ? null
          : forbidden(`only its owner may subscribe to ${topic}`)
      case 'none': return forbidden(`clients may not subscribe to ${topic}; the server subscribes them`)
    }
  }

  /** Whether a client may publish; `subscribed`: whether it is subscribed to the topic. */
  publishRefusal (actor: Actor, topic: string, subscribed: boolean): Refusal | null {
    const rules = this.#lookup(topic)
    if (rules === null) return unknownNamespace(topic)
    switch (rules.publish) {
      case 'all': return null
      case 'authenticated': return actor.userId === null ? forbidden(`publishing to ${topic} needs an authenticated user`) : null
      case 'subscribers': return subscribed ? null : forbidden(`only subscribers may publish to ${topic}`)
      case 'none': return forbidden(`only the server publishes to ${topic}`)
    }
  }

  /**
   * What is wrong with a message published into the topic (`message.price
   * must be number`), or null when it matches the topic's schema or there
   * is none. Assumes a known namespace (checked before).
   */
  invalidMessage (topic: string, message: unknown): string | null {
    const validator = this.#lookup(topic)?.validator
    if (validator == null || validator.Check(message)) return null
    const first = validator.Errors(message)[0]
    if (first === undefined) return 'message does not match the topic\'s schema'
    const where = first.instancePath === '' ? 'message' : `message${first.instancePath.replaceAll('/', '.')}`
    return `${where} ${first.message}`
  }

  #lookup (topic: string): Compiled | null {
    const namespaces = this.#namespaces
    if (namespaces === null) return this.#default
    const colon = topic.indexOf(':')
    if (colon === -1) return this.#default
    return namespaces.get(topic.slice(0, colon)) ?? null
  }
}

function compile (namespace: string | null, rules: TopicRules): Compiled {
  return Object.freeze({
    namespace,
    subscribe: rules.subscribe,
    publish: rules.publish,
    presence: rules.presence,
    joinLeave: rules.joinLeave,
    history: rules.history === false ? false : Object.freeze({ size: rules.history.size, ttlMs: rules.history.ttlMs }),
    validator: rules.schema === undefined ? null : compileSchema(namespace, rules.schema)
  })
}

function compileSchema (namespace: string | null, schema: TSchema): Validator {
  try {
    return Compile(schema)
  } catch (err) {
    const where = namespace === null ? 'topics.default.schema' : `topics.namespaces.${namespace}.schema`
    throw new OptionsError(`fastify-ws-hub: option "${where}" is not a schema that compiles: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
  }
}

function forbidden (message: string): Refusal {
  return { code: ErrorCodes.forbidden, message }
}

function unknownNamespace (topic: string): Refusal {
  return { code: ErrorCodes.unknownNamespace, message: `the namespace of ${topic} is not declared` }
}

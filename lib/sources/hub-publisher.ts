import { Compile } from 'typebox/compile'
import { ClientId, IdempotencyKey, nestsDeeperThan, Topic, UserId } from '../protocol/frames.js'
import type { MessageDispatcher } from '../dispatch/message-dispatcher.js'
import type { TopicPolicy } from '../topics/topic-policy.js'
import type { SourcePublisher } from './source-runner.js'
import type { SourceTarget } from './source.js'

export interface HubPublisherDeps {
  dispatcher: MessageDispatcher
  policy: TopicPolicy
  maxJsonDepth: number
  /** The transport and the registry are up. */
  accepting: () => boolean
}

const checkTopic = Compile(Topic)
const checkClientId = Compile(ClientId)
const checkUserId = Compile(UserId)
const checkKey = Compile(IdempotencyKey)

/**
 * Sources publish as the server does through `fastify.wsHub` (the same
 * frames, checks and topic schemas), except that a publication the other
 * instances could not be sent is an error here, not a logged count: the
 * record stays unacknowledged and is sent again.
 */
export function hubPublisher (deps: HubPublisherDeps): SourcePublisher {
  const { dispatcher, policy, maxJsonDepth } = deps
  return {
    accepting: deps.accepting,
    problem (target, key) {
      if (nestsDeeperThan({ message: target.message }, maxJsonDepth)) return 'invalid_message'
      if ('topic' in target) {
        if (!checkTopic.Check(target.topic)) return 'invalid_target'
        if (policy.rulesFor(target.topic) === null) return 'unknown_topic'
        if (key !== undefined && !checkKey.Check(key)) return 'invalid_target'
        return policy.invalidMessage(target.topic, target.message) === null ? null : 'invalid_message'
      }
      if ('userId' in target) return checkUserId.Check(target.userId) ? null : 'invalid_target'
      if ('clientId' in target) return checkClientId.Check(target.clientId) ? null : 'invalid_target'
      return null
    },
    async publish (target, key) {
      await send(dispatcher, target, key)
    }
  }
}

async function send (dispatcher: MessageDispatcher, target: SourceTarget, key: string | undefined): Promise<unknown> {
  const strict = { strict: true }
  if ('topic' in target) return await dispatcher.publishFrame(target.topic, { type: 'publish', topic: target.topic, from: 'server', message: target.message }, key, true)
  if ('userId' in target) return await dispatcher.send({ kind: 'user', userId: target.userId }, { type: 'direct', from: 'server', user: target.userId, message: target.message }, strict)
  if ('clientId' in target) return await dispatcher.send({ kind: 'client', id: target.clientId }, { type: 'direct', from: 'server', message: target.message }, strict)
  return await dispatcher.send({ kind: 'all' }, { type: 'server-broadcast', message: target.message }, strict)
}

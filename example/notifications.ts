/**
 * The notifications demo: a user inbox. Each user has a personal topic,
 * `user:<userId>`, with history: only its owner may subscribe, only the
 * server publishes, and every device of the user receives each
 * notification; a device that was offline for less than the history window
 * gets what it missed when it returns (the client resubscribes with `since`).
 *
 * Push one from a backend with the REST API:
 *   curl -X POST localhost:3000/api/topics/user:<id>/publish \
 *     -H 'content-type: application/json' -d '{"message":{"text":"Your order shipped"}}'
 * or from the page's "Notify me" button (the `notify-me` message type).
 */
import { randomUUID } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import { HubProtocolError, type ServiceContext, type Identity } from 'fastify-ws-hub'

export const USER_NAMESPACE = 'user'
/** What an inbox keeps: the last 100 notifications of the last ten minutes. */
export const INBOX_HISTORY = Object.freeze({ size: 100, ttlMs: 10 * 60_000 })
/** A demo user id: what the page picks and keeps in localStorage. */
const DEMO_USER = /^[A-Za-z0-9_-]{1,64}$/

export interface Notification {
  text: string
  at: string
}

export function inboxOf (userId: string): string {
  return `${USER_NAMESPACE}:${userId}`
}

/**
 * The demo's identity: `?user=<id>` as given, else a fresh guest id. This is
 * NOT authentication (anyone may claim any id): a real app verifies a
 * session or token here, and the `owner` rule then means what it says.
 */
export function demoIdentity (request: FastifyRequest): Identity {
  const claimed = (request.query as { user?: unknown }).user
  return { userId: typeof claimed === 'string' && DEMO_USER.test(claimed) ? claimed : `guest-${randomUUID()}` }
}

/** `{"type":"notify-me"}`: a notification into the sender's own inbox, so every device of the user gets it. */
export async function notifyMe (context: ServiceContext): Promise<void> {
  const userId = context.client.userId
  if (userId === null) throw new HubProtocolError('forbidden', 'notify-me needs a user')
  const notification: Notification = { text: 'You asked for a notification', at: new Date().toISOString() }
  await context.hub.publish(inboxOf(userId), notification)
}

import type { Connection } from '../connections/connection.js'
import { ClusterStateError, HubProtocolError, PresenceOffError } from '../errors.js'
import { ErrorCodes, type OutgoingFrame, type PresenceFrame } from '../protocol/frames.js'
import type { PresenceTracker } from './presence-tracker.js'

/**
 * The answer to a client's `presence` frame: one page, carrying the
 * frame's `id` (it is the answer, so no separate ack). A topic without
 * presence is `presence_off`; a registry that cannot answer is
 * `unavailable`, as for a `direct` it cannot route.
 */
export async function presenceReply (tracker: PresenceTracker, connection: Connection, frame: PresenceFrame): Promise<OutgoingFrame> {
  let page
  try {
    page = await tracker.list(frame.topic, { limit: frame.limit, cursor: frame.cursor })
  } catch (err) {
    if (err instanceof PresenceOffError) throw new HubProtocolError(ErrorCodes.presenceOff, `topic ${frame.topic} has no presence`)
    if (err instanceof ClusterStateError) {
      throw new HubProtocolError(ErrorCodes.unavailable, 'cannot list presence: the cluster state is unavailable; try again later', { cause: err })
    }
    throw err
  }
  const reply: OutgoingFrame = { type: 'presence', topic: frame.topic, members: page.members, clients: page.clients, users: page.users }
  if (page.cursor !== undefined) reply.cursor = page.cursor
  if (frame.id !== undefined) reply.id = frame.id
  return reply
}

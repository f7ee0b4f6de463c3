import type { Presence, PresenceMember, PresencePage, PresenceQuery } from '../presence.js'
import { userKey } from '../presence.js'

interface TopicMembers {
  members: Map<string, PresenceMember>
  /** user key -> that user's members in the topic. */
  users: Map<string, number>
  /** Client ids in order, rebuilt by the first `list` after a change rather than sorted on every call. */
  order: string[] | null
}

/**
 * One process's presence. A topic's entry is deleted with its last member,
 * so nothing outlives the subscriptions. No instance can depart apart from
 * its members (one process is one instance), so there is no `onDeparted`.
 */
export class MemoryPresence implements Presence {
  readonly #topics = new Map<string, TopicMembers>()

  async add (topic: string, member: PresenceMember): Promise<boolean> {
    let entry = this.#topics.get(topic)
    if (entry === undefined) {
      entry = { members: new Map(), users: new Map(), order: null }
      this.#topics.set(topic, entry)
    }
    // A copy: the caller's object may change after it is added.
    const own: PresenceMember = { clientId: member.clientId, userId: member.userId }
    if (member.info !== undefined) own.info = member.info
    const known = entry.members.has(own.clientId)
    entry.members.set(own.clientId, own)
    if (known) return false
    entry.order = null
    const key = userKey(own)
    const held = entry.users.get(key) ?? 0
    entry.users.set(key, held + 1)
    return held === 0
  }

  async remove (topic: string, clientId: string): Promise<boolean> {
    const entry = this.#topics.get(topic)
    const member = entry?.members.get(clientId)
    if (entry === undefined || member === undefined) return false
    entry.members.delete(clientId)
    entry.order = null
    if (entry.members.size === 0) this.#topics.delete(topic)
    const key = userKey(member)
    const left = (entry.users.get(key) ?? 1) - 1
    if (left > 0) {
      entry.users.set(key, left)
      return false
    }
    entry.users.delete(key)
    return true
  }

  async list (topic: string, query: PresenceQuery): Promise<PresencePage> {
    const entry = this.#topics.get(topic)
    if (entry === undefined) return { members: [], clients: 0, users: 0 }
    const page: PresencePage = { members: [], clients: entry.members.size, users: entry.users.size }
    const limit = Math.max(0, Math.floor(query.limit))
    if (limit === 0) return page
    // Code-unit order, which matches Redis' byte order for ASCII ids.
    entry.order ??= [...entry.members.keys()].sort((a, b) => a < b ? -1 : a > b ? 1 : 0)
    const order = entry.order
    const start = query.cursor === undefined ? 0 : firstAfter(order, query.cursor)
    for (const id of order.slice(start, start + limit)) {
      const member = entry.members.get(id)
      if (member !== undefined) page.members.push({ ...member })
    }
    if (start + limit < order.length) page.cursor = order[start + limit - 1]
    return page
  }
}

/** Index of the first id after `cursor` in sorted ids (the cursor need not be a member any more). */
function firstAfter (ids: string[], cursor: string): number {
  let low = 0
  let high = ids.length
  while (low < high) {
    const mid = (low + high) >>> 1
    if ((ids[mid] ?? '') <= cursor) low = mid + 1
    else high = mid
  }
  return low
}

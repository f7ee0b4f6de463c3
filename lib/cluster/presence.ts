/**
 * Who is subscribed to a presence topic, across every instance that shares
 * the registry: the members with their public `info`, and exact counts.
 *
 * A member is one connection in one topic. Its user is `userId`, or, for an
 * anonymous connection, the connection itself: three tabs of one user are
 * three members and one user. `add` and `remove` act for the joined
 * instance (the directory's `join`) and report the user's first and last
 * connection in the topic cluster-wide, which is what join and leave frames
 * are sent on. Members of an instance that leaves or whose lease lapses
 * (a crash) are removed with it and handed, once, to the `onDeparted`
 * handler of one live instance, which tells the subscribers.
 */
export interface PresenceMember {
  clientId: string
  userId: string | null
  /** What `authenticate` returned as `info`, already checked for size. */
  info?: unknown
}

export interface PresencePage {
  members: PresenceMember[]
  /** Members in the topic, cluster-wide. */
  clients: number
  /** Distinct users among them (an anonymous connection counts as one). */
  users: number
  /** Pass it back for the next page; absent on the last page. */
  cursor?: string
}

export interface PresenceCounts {
  clients: number
  users: number
}

export interface PresenceQuery {
  /** At most this many members; 0 answers the counts alone. */
  limit: number
  /** From a previous page; members come in client id order. */
  cursor?: string
}

/** A member removed without its instance removing it (that instance left or crashed). */
export interface PresenceDeparture {
  topic: string
  clientId: string
  userId: string | null
  /** Whether it was its user's last connection in the topic. */
  lastOfUser: boolean
}

export type DepartureHandler = (departures: PresenceDeparture[]) => void

export interface Presence {
  /** Resolves to whether it is its user's first connection in the topic cluster-wide; false when it was a member already. */
  add: (topic: string, member: PresenceMember) => Promise<boolean>
  /** Resolves to whether it was its user's last connection in the topic; false when it was not a member. */
  remove: (topic: string, clientId: string) => Promise<boolean>
  /** One page of members and the counts, read together. Each count is O(1); a page costs O(log n + limit). */
  list: (topic: string, query: PresenceQuery) => Promise<PresencePage>
  /**
   * Registers who publishes the leaves of members removed with a departed
   * instance; one handler, a later one replaces it. Left out by a backend
   * where no instance can depart without its members being removed one by
   * one (memory).
   */
  onDeparted?: (handler: DepartureHandler) => void
}

/** How a member's user is counted: its user id, or the connection itself when anonymous. */
export function userKey (member: Pick<PresenceMember, 'clientId' | 'userId'>): string {
  return member.userId === null ? `c:${member.clientId}` : `u:${member.userId}`
}

export function userOfKey (key: string): string | null {
  return key.startsWith('u:') ? key.slice(2) : null
}

import type { DepartureHandler, Presence, PresenceDeparture, PresenceMember, PresencePage, PresenceQuery } from '../presence.js'
import { userKey, userOfKey } from '../presence.js'
import { ClusterStateError } from '../../errors.js'
import type { RedisSession } from './redis-session.js'
import { LEASE_LOST, runScript } from './scripts.js'
import { PRESENCE_ADD, PRESENCE_DEPARTED, PRESENCE_LIST, PRESENCE_REMOVE, definePresenceScripts } from './presence-scripts.js'

/** Departures taken per call: a crashed instance of 10,000 members is announced in pages, never in one long script. */
const DEPARTED_BATCH = 500

/**
 * Presence in Redis, on the registry's session: its members live and die
 * with this instance's lease, are written in the same order as its
 * directory entries, and are part of the state a repair restores (after a
 * Redis restart, a lapsed lease, a write whose outcome is unknown), so a
 * restart never counts a member twice or loses one.
 *
 * Departures. A member removed with its instance (a crash reaped after the
 * lease, or a clean `leave` whose sockets were not all closed first) is
 * queued in Redis by the script that removed it. Every instance polls the
 * queue each renewal period with a script that first reaps, so the leaves
 * of a crashed instance go out within `leaseMs` plus one period of the
 * crash, each from exactly one live instance (the pop is atomic).
 */
export class RedisPresence implements Presence {
  readonly #session: RedisSession
  #handler: DepartureHandler | null = null
  #timer: NodeJS.Timeout | null = null
  #polling = false
  #failing = false

  constructor (session: RedisSession) {
    this.#session = session
  }

  async add (topic: string, member: PresenceMember): Promise<boolean> {
    const session = this.#session
    const id = session.member('RedisPresence.add')
    const own: PresenceMember = { clientId: member.clientId, userId: member.userId }
    if (member.info !== undefined) own.info = member.info
    const key = userKey(own)
    const json = JSON.stringify(own)
    definePresenceScripts(await session.connection())
    const code = await session.write('RedisPresence.add', PRESENCE_ADD, [id, topic, own.clientId, key, json], { topic, clientId: own.clientId }, {
      before: () => {
        session.member('RedisPresence.add')
        session.local.presence.set(`${topic} ${own.clientId}`, [topic, own.clientId, key, json])
      }
    })
    if (code !== LEASE_LOST) return code === 1
    // The restore puts the member back with the rest; whether it was its
    // user's first is lost with the lease, so no join is announced.
    await session.repair()
    return false
  }

  async remove (topic: string, clientId: string): Promise<boolean> {
    const session = this.#session
    const id = session.active
    if (id === null) return false
    let present = false
    definePresenceScripts(await session.connection())
    const code = await session.write('RedisPresence.remove', PRESENCE_REMOVE, [id, topic, clientId], { topic, clientId }, {
      before: () => { present = session.local.presence.delete(`${topic} ${clientId}`) }
    })
    if (code !== LEASE_LOST) return code === 2
    if (present) await session.repair()
    return false
  }

  async list (topic: string, query: PresenceQuery): Promise<PresencePage> {
    const session = this.#session
    const limit = Math.max(0, Math.floor(query.limit))
    const reply = await session.read('RedisPresence.list', { topic, limit }, async (client) => {
      definePresenceScripts(client)
      return await runScript(client, PRESENCE_LIST, session.context, [topic, limit, query.cursor ?? ''])
    })
    if (!Array.isArray(reply) || typeof reply[0] !== 'number' || typeof reply[1] !== 'number') {
      throw new ClusterStateError(`RedisPresence.list: unexpected reply from Redis (${typeof reply})`)
    }
    const page: PresencePage = { members: [], clients: reply[0], users: reply[1] }
    let last: string | undefined
    for (let i = 3; i + 1 < reply.length; i += 2) {
      const clientId: unknown = reply[i]
      if (typeof clientId !== 'string') continue
      last = clientId
      const member = parseMember(reply[i + 1], clientId)
      if (member !== null) page.members.push(member)
      else session.log.error({ topic, clientId }, 'ws-hub: malformed presence member in Redis skipped')
    }
    if (reply[2] === 1 && last !== undefined) page.cursor = last
    return page
  }

  /** Starts polling for departures; unref'd, so it keeps no process alive. */
  onDeparted (handler: DepartureHandler): void {
    this.#handler = handler
    if (this.#timer !== null) return
    this.#timer = setInterval(() => { this.#poll().catch(() => {}) }, this.#session.context.periodMs)
    this.#timer.unref()
  }

  /** Stops polling (the cluster state closes). */
  stop (): void {
    if (this.#timer !== null) clearInterval(this.#timer)
    this.#timer = null
  }

  async #poll (): Promise<void> {
    const session = this.#session
    const handler = this.#handler
    if (this.#polling || handler === null || session.active === null) return
    this.#polling = true
    try {
      for (;;) {
        const reply = await session.read('RedisPresence.departed', {}, async (client) => {
          definePresenceScripts(client)
          // Older than two leases: queued while no instance was polling.
          return await runScript(client, PRESENCE_DEPARTED, session.context, [2 * session.leaseMs, DEPARTED_BATCH])
        })
        const departures = Array.isArray(reply) ? reply.map(parseDeparture).filter((d) => d !== null) : []
        if (departures.length > 0) handler(departures)
        if (this.#failing) session.log.info('ws-hub: presence departures are read from Redis again')
        this.#failing = false
        if (!Array.isArray(reply) || reply.length < DEPARTED_BATCH) return
      }
    } catch (err) {
      // Logged once per outage: the session reports the outage itself.
      if (!this.#failing) session.log.warn({ err }, 'ws-hub: could not read presence departures from Redis; the leaves of departed instances are announced once it answers')
      this.#failing = true
    } finally {
      this.#polling = false
    }
  }
}

function parseMember (json: unknown, clientId: string): PresenceMember | null {
  if (typeof json !== 'string' || json === '') return null
  try {
    const value = JSON.parse(json) as Partial<PresenceMember>
    if (value.userId !== null && typeof value.userId !== 'string') return null
    const member: PresenceMember = { clientId, userId: value.userId }
    if (value.info !== undefined) member.info = value.info
    return member
  } catch {
    return null
  }
}

function parseDeparture (json: unknown): PresenceDeparture | null {
  if (typeof json !== 'string') return null
  try {
    const d = JSON.parse(json) as Record<string, unknown>
    if (typeof d.t !== 'string' || typeof d.c !== 'string' || typeof d.k !== 'string') return null
    return { topic: d.t, clientId: d.c, userId: userOfKey(d.k), lastOfUser: d.l === 1 }
  } catch {
    return null
  }
}

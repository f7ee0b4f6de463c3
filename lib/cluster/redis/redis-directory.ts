import type { Directory, DirectoryEntry, DirectoryPage, Page } from '../directory.js'
import { ClusterStateError } from '../../errors.js'
import { userKey } from './keys.js'
import { parseEntry } from './replies.js'
import type { RedisSession } from './redis-session.js'
import { ADD, LIST, REMOVE, runScript } from './scripts.js'

/**
 * The cluster's members and connections in Redis. `join` takes this
 * instance's lease (see `RedisSession`); its entries go with the lease.
 * Entries are written by the instance that holds the socket and read by
 * any: `get`, `locate` and `list` see the whole cluster.
 */
export class RedisDirectory implements Directory {
  readonly #session: RedisSession

  constructor (session: RedisSession) {
    this.#session = session
  }

  async join (instanceId: string): Promise<void> {
    await this.#session.join(instanceId)
  }

  async leave (instanceId: string): Promise<void> {
    await this.#session.leave(instanceId)
  }

  async instances (): Promise<string[]> {
    return await this.#session.instances()
  }

  async add (entry: DirectoryEntry): Promise<void> {
    const session = this.#session
    const id = session.member('RedisDirectory.add')
    if (entry.instanceId !== id) {
      throw new ClusterStateError(`RedisDirectory.add: connection ${entry.id} belongs to instance ${entry.instanceId}, but this directory serves ${id}`)
    }
    // Only the entry's own fields, so the local truth and Redis hold the same.
    const own: DirectoryEntry = { id: entry.id, ip: entry.ip, userId: entry.userId, connectedAt: entry.connectedAt, instanceId: id }
    await session.run('RedisDirectory.add', ADD, [id, own.id, JSON.stringify(own)], { clientId: own.id }, {
      before: () => {
        session.member('RedisDirectory.add')
        session.local.entries.set(own.id, own)
      }
    })
  }

  async remove (clientId: string): Promise<void> {
    const session = this.#session
    const id = session.active
    if (id === null) return
    let present = false
    await session.run('RedisDirectory.remove', REMOVE, [id, clientId], { clientId }, {
      before: () => { present = session.local.entries.delete(clientId) }
    }, () => present)
  }

  async get (clientId: string): Promise<DirectoryEntry | null> {
    const { conns } = this.#session.keys
    const json = await this.#session.read('RedisDirectory.get', { clientId }, async (client) => client.hget(conns, clientId))
    return json === null ? null : parseEntry(json, this.#session.log, clientId)
  }

  async locate (clientId: string): Promise<string | null> {
    return (await this.get(clientId))?.instanceId ?? null
  }

  async locateUser (userId: string): Promise<string[]> {
    const key = userKey(this.#session.keys.prefix, userId)
    return await this.#session.read('RedisDirectory.locateUser', { userId }, async (client) => client.hkeys(key))
  }

  async list (page: Page): Promise<DirectoryPage> {
    const limit = Math.max(0, Math.floor(page.limit))
    const offset = Math.max(0, Math.floor(page.offset))
    const session = this.#session
    const reply = await session.read('RedisDirectory.list', { limit, offset }, async (client) => runScript(client, LIST, session.context, [limit, offset]))
    if (!Array.isArray(reply) || typeof reply[0] !== 'number') {
      throw new ClusterStateError(`RedisDirectory.list: unexpected reply from Redis (${typeof reply})`)
    }
    const entries: DirectoryEntry[] = []
    for (const json of reply.slice(1)) {
      const entry = typeof json === 'string' ? parseEntry(json, session.log, undefined) : null
      if (entry !== null) entries.push(entry)
    }
    return { count: reply[0], entries }
  }
}

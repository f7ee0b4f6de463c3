import type { RedisConnection } from './connect.js'
import { script, type Script } from './scripts.js'

/**
 * The presence scripts (their Lua functions are in `presence-lua.ts`, part
 * of every script's prelude). Each mutating one checks the caller's lease,
 * as the directory's do: a lapsed instance restores before it writes.
 */

/** A: id, topic, clientId, user key, member JSON. Returns 1 first of its user, 0 not, -1 lease lost. */
export const PRESENCE_ADD = script('presenceAdd', ['instances', 'served'], `
local id = A[1]
if not live(id, clock()) then return -1 end
return presence_add(id, A[2], A[3], A[4], A[5])
`)

/** A: id, topic, clientId. Returns 2 removed its user's last, 1 removed, 0 not a member, -1 lease lost. */
export const PRESENCE_REMOVE = script('presenceRemove', ['instances', 'served'], `
local id = A[1]
if not live(id, clock()) then return -1 end
return presence_remove(id, A[2], A[3]) + 1
`)

/**
 * A: topic, limit, cursor ('' for the first page). Returns { clients,
 * users, more, id1, json1, ... }: both counts (HLEN, O(1)) and the page
 * after the cursor in id order (a range of the order index, O(log n +
 * limit)), read atomically. One page per call, so a topic of any size never
 * blocks Redis for longer than a page. Its one key is not read: it routes
 * the script to the registry's slot on a Redis Cluster.
 */
export const PRESENCE_LIST = script('presenceList', ['order'], `
local topic, limit, cursor = A[1], tonumber(A[2]), A[3]
local out = { redis.call('HLEN', presence_key(topic, 'members')), redis.call('HLEN', presence_key(topic, 'users')), 0 }
if limit <= 0 then return out end
local from = '-'
if cursor ~= '' then from = '(' .. cursor end
local ids = redis.call('ZRANGE', presence_key(topic, 'order'), from, '+', 'BYLEX', 'LIMIT', 0, limit + 1)
if #ids > limit then
  out[3] = 1
  ids[#ids] = nil
end
if #ids == 0 then return out end
local jsons = redis.call('HMGET', presence_key(topic, 'members'), unpack(ids))
for i = 1, #ids do
  out[#out + 1] = ids[i]
  out[#out + 1] = jsons[i] or ''
end
return out
`)

/**
 * A: max age (ms), count. Reaps expired instances (their members depart),
 * then takes up to `count` departures off the queue: each is taken by one
 * instance only. Those older than the max age are dropped unannounced:
 * news that late (queued while no instance was polling) is not news.
 */
export const PRESENCE_DEPARTED = script('presenceDeparted', ['instances', 'served', 'ips', 'total', 'users', 'conns', 'order', 'departed'], `
local max_age, count = tonumber(A[1]), tonumber(A[2])
local now = clock()
reap(now)
local taken = redis.call('LPOP', K.departed, count)
local out = {}
if not taken then return out end
for i = 1, #taken do
  local d = cjson.decode(taken[i])
  if now - d.at <= max_age then out[#out + 1] = taken[i] end
end
return out
`)

const PRESENCE_SCRIPTS: readonly Script[] = [PRESENCE_ADD, PRESENCE_REMOVE, PRESENCE_LIST, PRESENCE_DEPARTED]

const defined = new WeakSet<RedisConnection>()

/** Defines the presence scripts on the session's connection, once (see `defineScripts`). */
export function definePresenceScripts (client: RedisConnection): void {
  if (defined.has(client)) return
  for (const { name, keys, lua } of PRESENCE_SCRIPTS) client.defineCommand(name, { numberOfKeys: keys.length, lua })
  defined.add(client)
}

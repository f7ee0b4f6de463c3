/**
 * Presence in Lua, shared by the presence scripts and by the cluster
 * state's `drop` (an instance that leaves or is reaped takes its members
 * with it). Key layout (see `keys.ts`):
 *
 *   presence:<topic>:members  HASH  clientId -> member JSON
 *   presence:<topic>:order    ZSET  clientId, score 0: pages by id, O(log n + limit)
 *   presence:<topic>:users    HASH  user key -> that user's members in the topic
 *   inst:<id>:presence        HASH  "<topic> <clientId>" -> user key (a topic has no space)
 *   departed                  LIST  JSON of members removed with their instance, for one live instance to announce
 *
 * On a Redis Cluster a topic's members stay in the registry's slot, not
 * the topic's: `presence_add` and `presence_remove` check the lease and
 * write the instance's bookkeeping (`inst:<id>:presence`) with the topic's
 * keys, and `drop_presence` removes an instance's members of every topic
 * in the reap, so each script needs both in one slot.
 *
 * HLEN of `members` and of `users` are the counts, each O(1). Every hash
 * and set empties itself with its last member, so no key outlives it.
 */

/** Departures kept for announcing at most; older ones go first. Bounds the list if no instance polls. */
export const MAX_DEPARTED = 100_000

export const PRESENCE_LUA = `
local function presence_key(topic, kind) return P .. 'presence:' .. topic .. ':' .. kind end

-- Adds a member for instance inst. Returns 1 when it is its user's first
-- member in the topic, 0 otherwise (and when it was a member already: its
-- JSON is replaced).
local function presence_add(inst, topic, cid, ukey, json)
  local mine, field = inst_key(inst, 'presence'), topic .. ' ' .. cid
  redis.call('HSET', presence_key(topic, 'members'), cid, json)
  if redis.call('HSETNX', mine, field, ukey) == 0 then return 0 end
  redis.call('ZADD', presence_key(topic, 'order'), 0, cid)
  if redis.call('HINCRBY', presence_key(topic, 'users'), ukey, 1) == 1 then return 1 end
  return 0
end

-- Removes a member of instance inst. Returns -1 when it held none, 1 when
-- it was its user's last member in the topic, 0 otherwise.
local function presence_remove(inst, topic, cid)
  local mine, field = inst_key(inst, 'presence'), topic .. ' ' .. cid
  local ukey = redis.call('HGET', mine, field)
  if not ukey then return -1 end
  redis.call('HDEL', mine, field)
  redis.call('HDEL', presence_key(topic, 'members'), cid)
  redis.call('ZREM', presence_key(topic, 'order'), cid)
  if redis.call('HINCRBY', presence_key(topic, 'users'), ukey, -1) <= 0 then
    redis.call('HDEL', presence_key(topic, 'users'), ukey)
    return 1
  end
  return 0
end

-- Removes every member of an instance. With now given (it left or was
-- reaped, not restored) each is queued in K.departed so a live instance
-- tells the subscribers.
local function drop_presence(id, now)
  local mine = inst_key(id, 'presence')
  local held = redis.call('HGETALL', mine)
  for i = 1, #held, 2 do
    local cut = string.find(held[i], ' ', 1, true)
    local topic, cid = string.sub(held[i], 1, cut - 1), string.sub(held[i], cut + 1)
    local last = presence_remove(id, topic, cid)
    if now ~= nil then
      redis.call('RPUSH', K.departed, cjson.encode({ t = topic, c = cid, k = held[i + 1], l = last, at = now }))
    end
  end
  if now ~= nil and #held > 0 then redis.call('LTRIM', K.departed, -${MAX_DEPARTED}, -1) end
  redis.call('DEL', mine)
end

-- Puts back a restored instance's members: { {topic, clientId, user key, json}, ... }.
local function restore_presence(id, members)
  for i = 1, #members do
    local m = members[i]
    presence_add(id, m[1], m[2], m[3], m[4])
  end
end
`

import type { RedisConnection } from './connect.js'
import { ClusterStateError } from '../../errors.js'
import { LUA_KEY_FUNCTIONS, type FixedKey, type KeyLayout } from './keys.js'
import { PRESENCE_LUA } from './presence-lua.js'

/**
 * The Lua scripts of the Redis cluster state; key layout in `keys.ts`.
 *
 * Every script gets the fixed keys it touches as KEYS (bound to `K` by name),
 * then ARGV: the prefix, the caller's renewal period and stall grace (see
 * below), and its own arguments, bound to `A` from A[1].
 *
 * Invariant kept by every script: the cluster-wide counts are the sums of
 * the instances' counts, so removing an instance subtracts exactly what it
 * held, and no count is ever stored below 1 (a field or key at 0 is deleted).
 *
 * Time is Redis's TIME, read inside the script: every instance compares
 * leases against one clock, so clock skew between application hosts cannot
 * expire a live instance or keep a dead one. (Scripts are replicated by
 * effects, the only mode since Redis 7 and the default since 5;
 * replicate_commands opts in on 3.2 and 4.)
 *
 * Stalls. A lease must not lapse for time in which Redis itself served
 * nobody (stopped, hung, or cut off from every instance): no instance could
 * renew, and reaping them all at once frees every slot of live connections.
 * So every script that reads the time records it (`served`), and one that
 * finds no script ran for longer than the caller's renewal period (the
 * longest a live instance goes without renewing) counts only that period of
 * the silence: every lease that was live when Redis last served is moved
 * on by the rest, so it keeps what it had left (at least a period). A
 * silence past two periods may also have cost the instances their
 * connections, so those leases get at least the grace (a lease plus the
 * reconnect delay) from now, growing from 0 at two periods so there is no
 * step a late timer could trip over: a live instance renews every period,
 * so an ordinary silence only ever moves leases by its own lateness.
 */
export interface Script {
  /** The command name ioredis defines on each connection. */
  name: string
  keys: readonly FixedKey[]
  lua: string
}

const PRELUDE = `
if redis.replicate_commands ~= nil then redis.replicate_commands() end
local P, PERIOD, GRACE = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local A = {}
for i = 4, #ARGV do A[#A + 1] = ARGV[i] end
${LUA_KEY_FUNCTIONS}
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The time leases are judged by: Redis' clock, with a silence of Redis
-- taken out of every lease (see "Stalls" in scripts.ts). Needs K.served.
local function clock()
  local now = now_ms()
  local served = tonumber(redis.call('GET', K.served))
  if served ~= nil and now - served > PERIOD then
    local gap = now - served
    local floor = now + math.min(GRACE, gap - 2 * PERIOD)
    local leases = redis.call('ZRANGE', K.instances, 0, -1, 'WITHSCORES')
    for i = 1, #leases, 2 do
      local expiry = tonumber(leases[i + 1])
      -- A lease already out when Redis last served gets nothing back.
      if expiry > served then
        redis.call('ZADD', K.instances, math.max(expiry + gap - PERIOD, floor), leases[i])
      end
    end
  end
  redis.call('SET', K.served, now)
  return now
end

local function live(id, now)
  local expiry = tonumber(redis.call('ZSCORE', K.instances, id))
  return expiry ~= nil and expiry > now
end

-- Subtracts n from a hash field, deleting the field at zero or below.
local function take(key, field, n)
  if redis.call('HINCRBY', key, field, -n) <= 0 then redis.call('HDEL', key, field) end
end

${PRESENCE_LUA}

local function take_total(n)
  if n > 0 and redis.call('DECRBY', K.total, n) <= 0 then redis.call('DEL', K.total) end
end

local function decode(json)
  local ok, entry = pcall(cjson.decode, json)
  if ok and type(entry) == 'table' then return entry end
  return nil
end

local function link_user(inst, user)
  redis.call('HINCRBY', user_key(user), inst, 1)
  redis.call('SADD', inst_key(inst, 'located'), user)
end

local function unlink_user(inst, user)
  local key = user_key(user)
  if redis.call('HINCRBY', key, inst, -1) <= 0 then
    redis.call('HDEL', key, inst)
    redis.call('SREM', inst_key(inst, 'located'), user)
  end
end

-- Removes a connection from the directory. With owner given, only when that
-- instance holds it. Returns whether something was removed.
local function forget(cid, owner)
  local json = redis.call('HGET', K.conns, cid)
  if not json then return false end
  local entry = decode(json)
  local inst = entry and entry.instanceId
  if owner ~= nil and inst ~= owner then return false end
  if type(inst) == 'string' then
    redis.call('SREM', inst_key(inst, 'conns'), cid)
    if type(entry.userId) == 'string' then unlink_user(inst, entry.userId) end
  end
  redis.call('HDEL', K.conns, cid)
  redis.call('ZREM', K.order, cid)
  return true
end

local function remember(inst, cid, json)
  redis.call('HSET', K.conns, cid, json)
  redis.call('ZADD', K.order, 0, cid)
  redis.call('SADD', inst_key(inst, 'conns'), cid)
  local entry = decode(json)
  if entry and type(entry.userId) == 'string' then link_user(inst, entry.userId) end
end

-- Every trace of one instance: its slots leave the cluster-wide counts, its
-- connections, users and presence leave the directory, its lease goes.
-- With now given (it left or was reaped), its members are queued as departed.
local function drop(id, now)
  drop_presence(id, now)
  local ips = redis.call('HGETALL', inst_key(id, 'ips'))
  local freed = 0
  for i = 1, #ips, 2 do
    local n = tonumber(ips[i + 1])
    take(K.ips, ips[i], n)
    freed = freed + n
  end
  take_total(freed)
  local users = redis.call('HGETALL', inst_key(id, 'users'))
  for i = 1, #users, 2 do take(K.users, users[i], tonumber(users[i + 1])) end
  local located = redis.call('SMEMBERS', inst_key(id, 'located'))
  for i = 1, #located do redis.call('HDEL', user_key(located[i]), id) end
  local conns = redis.call('SMEMBERS', inst_key(id, 'conns'))
  for i = 1, #conns do
    redis.call('HDEL', K.conns, conns[i])
    redis.call('ZREM', K.order, conns[i])
  end
  redis.call('DEL', inst_key(id, 'ips'), inst_key(id, 'users'), inst_key(id, 'located'), inst_key(id, 'conns'))
  redis.call('ZREM', K.instances, id)
end

-- Drops every instance whose lease has run out. Except the one named quiet
-- (restoring itself: its members are still there), their members depart.
local function reap(now, quiet)
  local dead = redis.call('ZRANGEBYSCORE', K.instances, '-inf', now)
  for i = 1, #dead do drop(dead[i], dead[i] ~= quiet and now or nil) end
end
`

/** Return code of a mutating script run for an instance that holds no live lease. */
export const LEASE_LOST = -1

/** A reap or a drop can touch any of them. */
const ALL: readonly FixedKey[] = ['instances', 'served', 'ips', 'total', 'users', 'conns', 'order', 'departed']

export function script (name: string, keys: readonly FixedKey[], body: string): Script {
  const bind = keys.map((key, n) => `${key} = KEYS[${n + 1}]`).join(', ')
  return { name: `wsHub_${name}`, keys, lua: `local K = { ${bind} }\n${PRELUDE}\n${body}` }
}

/**
 * A: id, ip, perIp, total.
 * Returns 0 reserved, 1 ip_limit, 2 total_limit, -1 lease lost.
 */
export const RESERVE = script('reserve', ALL, `
local id, ip = A[1], A[2]
local per_ip, total = tonumber(A[3]), tonumber(A[4])
local now = clock()
reap(now)
if not live(id, now) then return -1 end
if (tonumber(redis.call('HGET', K.ips, ip)) or 0) >= per_ip then return 1 end
if (tonumber(redis.call('GET', K.total)) or 0) >= total then return 2 end
redis.call('HINCRBY', K.ips, ip, 1)
redis.call('INCR', K.total)
redis.call('HINCRBY', inst_key(id, 'ips'), ip, 1)
return 0
`)

/**
 * A: id, ip. Frees one of the slots this instance holds for the IP; with
 * none held it changes nothing, so counts never go negative and one
 * instance can never free another's slot.
 * Returns 1 released, 0 nothing held, -1 lease lost.
 */
export const RELEASE = script('release', ['instances', 'served', 'ips', 'total'], `
local id, ip = A[1], A[2]
if not live(id, clock()) then return -1 end
local mine = inst_key(id, 'ips')
if (tonumber(redis.call('HGET', mine, ip)) or 0) <= 0 then return 0 end
take(mine, ip, 1)
take(K.ips, ip, 1)
take_total(1)
return 1
`)

/** A: id, userId, max. Returns 0 reserved, 1 the user holds max already, -1 lease lost. */
export const RESERVE_USER = script('reserveUser', ALL, `
local id, user, max = A[1], A[2], tonumber(A[3])
local now = clock()
reap(now)
if not live(id, now) then return -1 end
if (tonumber(redis.call('HGET', K.users, user)) or 0) >= max then return 1 end
redis.call('HINCRBY', K.users, user, 1)
redis.call('HINCRBY', inst_key(id, 'users'), user, 1)
return 0
`)

/** A: id, userId. As RELEASE, for a user slot. Returns 1 released, 0 nothing held, -1 lease lost. */
export const RELEASE_USER = script('releaseUser', ['instances', 'served', 'users'], `
local id, user = A[1], A[2]
if not live(id, clock()) then return -1 end
local mine = inst_key(id, 'users')
if (tonumber(redis.call('HGET', mine, user)) or 0) <= 0 then return 0 end
take(mine, user, 1)
take(K.users, user, 1)
return 1
`)

/** A: id, clientId, DirectoryEntry JSON. Returns 1, or -1 lease lost. */
export const ADD = script('add', ['instances', 'served', 'conns', 'order'], `
local id, cid = A[1], A[2]
if not live(id, clock()) then return -1 end
forget(cid, nil)
remember(id, cid, A[3])
return 1
`)

/** A: id, clientId. Returns 1 removed, 0 absent, -1 lease lost. */
export const REMOVE = script('remove', ['instances', 'served', 'conns', 'order'], `
local id, cid = A[1], A[2]
if not live(id, clock()) then return -1 end
if forget(cid, id) then return 1 end
return 0
`)

/**
 * A: id, leaseMs, snapshot JSON
 * {"ips":{ip:n},"users":{user:n},"conns":[json],"presence":[[topic,clientId,userKey,json]],"limits":{...}}.
 * Replaces everything Redis holds for the instance with the snapshot and
 * grants a fresh lease. Used by join, and to repair the instance's state
 * after Redis lost it (restart, lapsed lease) or a write's outcome is
 * unknown. The snapshot is live connections, so all of it is restored, but
 * it is checked against the limits (those the snapshot names): while the
 * instance had no lease, others may have taken the slots it held. What no
 * longer fits is returned for the instance to close (fencing); until it
 * has, the counts are over the limits, so nothing more is admitted.
 * Returns JSON {"ips":{ip:n},"users":{user:n},"total":n}: how many of the
 * instance's connections are over each limit (only those over are listed).
 */
export const SYNC = script('sync', ALL, `
local id, lease = A[1], tonumber(A[2])
local snapshot = cjson.decode(A[3])
local limits = snapshot.limits or {}
local over = { ips = {}, users = {}, total = 0 }
-- How many of mine go over max when others already hold some.
local function excess(others, mine, max)
  if max == nil then return 0 end
  return math.max(0, math.min(mine, others + mine - max))
end
local now = clock()
reap(now, id)
drop(id, nil)
redis.call('ZADD', K.instances, now + lease, id)
local total = 0
for ip, n in pairs(snapshot.ips) do
  local e = excess(redis.call('HINCRBY', K.ips, ip, n) - n, n, limits.perIp)
  if e > 0 then over.ips[ip] = e end
  redis.call('HSET', inst_key(id, 'ips'), ip, n)
  total = total + n
end
if total > 0 then over.total = excess(redis.call('INCRBY', K.total, total) - total, total, limits.total) end
for user, n in pairs(snapshot.users) do
  local e = excess(redis.call('HINCRBY', K.users, user, n) - n, n, limits.perUser)
  if e > 0 then over.users[user] = e end
  redis.call('HSET', inst_key(id, 'users'), user, n)
end
for i = 1, #snapshot.conns do
  local json = snapshot.conns[i]
  local entry = decode(json)
  if entry and type(entry.id) == 'string' then
    forget(entry.id, nil)
    remember(id, entry.id, json)
  end
end
restore_presence(id, snapshot.presence or {})
return cjson.encode(over)
`)

/**
 * A: id, leaseMs. Reaps expired instances, then extends this instance's
 * lease if it still holds one. Returns 1 extended, 0 lease lost (nothing
 * created: the caller must SYNC to restore its state).
 */
export const REFRESH = script('refresh', ALL, `
local id, lease = A[1], tonumber(A[2])
local now = clock()
reap(now)
if not live(id, now) then return 0 end
redis.call('ZADD', K.instances, now + lease, id)
return 1
`)

/** A: id. Removes the instance and all its state at once. */
export const LEAVE = script('leave', ALL, `
drop(A[1], now_ms())
-- With no lease left there is no silence to measure and nobody to tell of
-- departures: leave no key behind.
if redis.call('ZCARD', K.instances) == 0 then redis.call('DEL', K.served, K.departed) end
return 1
`)

/** The instances whose lease has not run out. */
export const INSTANCES = script('instances', ['instances', 'served'], `
return redis.call('ZRANGEBYSCORE', K.instances, '(' .. clock(), '+inf')
`)

/**
 * A: limit, offset. Returns { count, json... }: the cluster-wide count and
 * one page of entries in client id order, read atomically. The order index
 * holds every id at score 0, so Redis keeps it sorted by id and a page is a
 * range by rank: O(log n + limit), no sort per call.
 */
export const LIST = script('list', ['conns', 'order'], `
local limit, offset = tonumber(A[1]), tonumber(A[2])
local out = { redis.call('ZCARD', K.order) }
if limit > 0 then
  local ids = redis.call('ZRANGE', K.order, offset, offset + limit - 1)
  for i = 1, #ids do out[#out + 1] = redis.call('HGET', K.conns, ids[i]) end
end
return out
`)

const SCRIPTS: readonly Script[] = [
  RESERVE, RELEASE, RESERVE_USER, RELEASE_USER, ADD, REMOVE, SYNC, REFRESH, LEAVE, INSTANCES, LIST
]

/**
 * Defines every script on a connection. ioredis then runs each by its SHA1
 * and sends the source only when the server lacks it (first use, a restart,
 * SCRIPT FLUSH): NOSCRIPT means nothing ran, so that cannot run it twice.
 */
export function defineScripts (client: RedisConnection): void {
  for (const { name, keys, lua } of SCRIPTS) client.defineCommand(name, { numberOfKeys: keys.length, lua })
}

/** What every script is run with besides its own arguments. */
export interface ScriptContext {
  keys: KeyLayout
  /** The caller's renewal period: a longer silence of Redis is a stall (see "Stalls" above). */
  periodMs: number
  /** What every live lease gets at least after a long stall: time to reconnect and renew. */
  graceMs: number
}

export async function runScript (client: RedisConnection, script: Script, context: ScriptContext, args: ReadonlyArray<string | number>): Promise<unknown> {
  // Commands made by defineCommand exist only at run time, so ioredis' types do not list them.
  const command: unknown = Reflect.get(client, script.name)
  if (typeof command !== 'function') {
    throw new ClusterStateError(`Redis script ${script.name} is not defined on this connection`)
  }
  const { keys, periodMs, graceMs } = context
  const reply: unknown = await command.apply(client, [...script.keys.map((key) => keys[key]), keys.prefix, periodMs, graceMs, ...args])
  return reply
}

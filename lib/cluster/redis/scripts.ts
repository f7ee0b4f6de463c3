import { createHash } from 'node:crypto'
import type { Redis } from 'ioredis'

/**
 * A Lua script run by its SHA1, sent in full only when the server does not
 * have it cached yet (first use, or after a restart or SCRIPT FLUSH).
 */
export class LuaScript {
  readonly name: string
  readonly source: string
  readonly sha: string

  constructor (name: string, source: string) {
    this.name = name
    this.source = source
    this.sha = createHash('sha1').update(source).digest('hex')
  }

  async run (client: Redis, args: Array<string | number>): Promise<unknown> {
    try {
      return await client.evalsha(this.sha, 0, ...args)
    } catch (err) {
      // NOSCRIPT means nothing ran, so sending the source cannot run it twice.
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err
      return await client.eval(this.source, 0, ...args)
    }
  }
}

/**
 * Registry state, all under one prefix `p` (ARGV[1]):
 *
 *   p..'instances'         ZSET  instanceId -> lease expiry (ms, Redis clock)
 *   p..'ips'               HASH  ip -> slots held cluster-wide
 *   p..'total'             STR   slots held cluster-wide
 *   p..'inst:'..id..':ips'   HASH  ip -> slots held by that instance
 *   p..'inst:'..id..':conns' SET   client ids held by that instance
 *   p..'inst:'..id..':users' SET   user ids with a connection on that instance
 *   p..'conns'             HASH  clientId -> ConnectionInfo JSON
 *   p..'user:'..userId     HASH  instanceId -> that user's connections there
 *
 * Invariant kept by every script: the global counts are the sums of the
 * instances' counts, so removing an instance subtracts exactly what it held
 * and no count is ever stored below 1 (a field or key at 0 is deleted).
 *
 * Keys are built inside the scripts (a reap touches instances it discovers),
 * so they are passed as ARGV, not KEYS: this works on a single Redis, a
 * replica set or Sentinel, not on Redis Cluster.
 *
 * Time is Redis's TIME, read inside the script: every instance compares
 * leases against one clock, so clock skew between application hosts cannot
 * expire a live instance or keep a dead one. (Scripts are replicated by
 * effects, the only mode since Redis 7 and the default since 5;
 * replicate_commands opts in on 3.2 and 4.)
 */
const PRELUDE = `
if redis.replicate_commands ~= nil then redis.replicate_commands() end
local p = ARGV[1]

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function live(id, now)
  local expiry = tonumber(redis.call('ZSCORE', p .. 'instances', id))
  return expiry ~= nil and expiry > now
end

-- Subtracts n from a hash field, deleting the field at zero or below.
local function take(key, field, n)
  if redis.call('HINCRBY', key, field, -n) <= 0 then redis.call('HDEL', key, field) end
end

local function take_total(n)
  if n > 0 and redis.call('DECRBY', p .. 'total', n) <= 0 then redis.call('DEL', p .. 'total') end
end

local function decode(json)
  local ok, info = pcall(cjson.decode, json)
  if ok and type(info) == 'table' then return info end
  return nil
end

local function link_user(inst, user)
  redis.call('HINCRBY', p .. 'user:' .. user, inst, 1)
  redis.call('SADD', p .. 'inst:' .. inst .. ':users', user)
end

local function unlink_user(inst, user)
  local key = p .. 'user:' .. user
  if redis.call('HINCRBY', key, inst, -1) <= 0 then
    redis.call('HDEL', key, inst)
    redis.call('SREM', p .. 'inst:' .. inst .. ':users', user)
  end
end

-- Removes a connection from the directory. With owner given, only when that
-- instance holds it. Returns whether something was removed.
local function forget(cid, owner)
  local json = redis.call('HGET', p .. 'conns', cid)
  if not json then return false end
  local info = decode(json)
  local inst = info and info.instanceId
  if owner ~= nil and inst ~= owner then return false end
  if type(inst) == 'string' then
    redis.call('SREM', p .. 'inst:' .. inst .. ':conns', cid)
    if type(info.userId) == 'string' then unlink_user(inst, info.userId) end
  end
  redis.call('HDEL', p .. 'conns', cid)
  return true
end

local function remember(inst, cid, json)
  redis.call('HSET', p .. 'conns', cid, json)
  redis.call('SADD', p .. 'inst:' .. inst .. ':conns', cid)
  local info = decode(json)
  if info and type(info.userId) == 'string' then link_user(inst, info.userId) end
end

-- Every trace of one instance: its slots leave the global counts, its
-- connections and users leave the directory, its lease goes.
local function drop(id)
  local base = p .. 'inst:' .. id
  local ips = redis.call('HGETALL', base .. ':ips')
  local freed = 0
  for i = 1, #ips, 2 do
    local n = tonumber(ips[i + 1])
    take(p .. 'ips', ips[i], n)
    freed = freed + n
  end
  take_total(freed)
  local users = redis.call('SMEMBERS', base .. ':users')
  for i = 1, #users do redis.call('HDEL', p .. 'user:' .. users[i], id) end
  local conns = redis.call('SMEMBERS', base .. ':conns')
  for i = 1, #conns do redis.call('HDEL', p .. 'conns', conns[i]) end
  redis.call('DEL', base .. ':ips', base .. ':users', base .. ':conns')
  redis.call('ZREM', p .. 'instances', id)
end

-- Drops every instance whose lease has run out.
local function reap(now)
  local dead = redis.call('ZRANGEBYSCORE', p .. 'instances', '-inf', now)
  for i = 1, #dead do drop(dead[i]) end
end
`

/** Return code of a mutating script run for an instance that holds no live lease. */
export const LEASE_LOST = -1

function script (name: string, body: string): LuaScript {
  return new LuaScript(name, PRELUDE + body)
}

/**
 * ARGV: p, instanceId, ip, perIp, total.
 * Returns 0 reserved, 1 ip_limit, 2 total_limit, -1 lease lost.
 */
export const RESERVE = script('reserve', `
local id, ip = ARGV[2], ARGV[3]
local per_ip, total = tonumber(ARGV[4]), tonumber(ARGV[5])
local now = now_ms()
reap(now)
if not live(id, now) then return -1 end
if (tonumber(redis.call('HGET', p .. 'ips', ip)) or 0) >= per_ip then return 1 end
if (tonumber(redis.call('GET', p .. 'total')) or 0) >= total then return 2 end
redis.call('HINCRBY', p .. 'ips', ip, 1)
redis.call('INCR', p .. 'total')
redis.call('HINCRBY', p .. 'inst:' .. id .. ':ips', ip, 1)
return 0
`)

/**
 * ARGV: p, instanceId, ip. Frees one of the slots this instance holds for
 * the IP; with none held it changes nothing, so counts never go negative
 * and one instance can never free another's slot.
 * Returns 1 released, 0 nothing held, -1 lease lost.
 */
export const RELEASE = script('release', `
local id, ip = ARGV[2], ARGV[3]
if not live(id, now_ms()) then return -1 end
local mine = p .. 'inst:' .. id .. ':ips'
if (tonumber(redis.call('HGET', mine, ip)) or 0) <= 0 then return 0 end
take(mine, ip, 1)
take(p .. 'ips', ip, 1)
take_total(1)
return 1
`)

/** ARGV: p, instanceId, clientId, ConnectionInfo JSON. Returns 1, or -1 lease lost. */
export const ADD = script('add', `
local id, cid = ARGV[2], ARGV[3]
if not live(id, now_ms()) then return -1 end
forget(cid, nil)
remember(id, cid, ARGV[4])
return 1
`)

/** ARGV: p, instanceId, clientId, ConnectionInfo JSON. Returns 1 replaced, 0 absent, -1 lease lost. */
export const UPDATE = script('update', `
local id, cid = ARGV[2], ARGV[3]
if not live(id, now_ms()) then return -1 end
if not forget(cid, id) then return 0 end
remember(id, cid, ARGV[4])
return 1
`)

/** ARGV: p, instanceId, clientId. Returns 1 removed, 0 absent, -1 lease lost. */
export const REMOVE = script('remove', `
local id, cid = ARGV[2], ARGV[3]
if not live(id, now_ms()) then return -1 end
if forget(cid, id) then return 1 end
return 0
`)

/**
 * ARGV: p, instanceId, leaseMs, snapshot JSON {"ips":{ip:n},"conns":[json]}.
 * Replaces everything Redis holds for the instance with the snapshot and
 * grants a fresh lease. Used by join, and to repair the instance's state
 * after Redis lost it (restart, lapsed lease) or a write's outcome is
 * unknown. Limits are not checked: the snapshot is live connections.
 */
export const SYNC = script('sync', `
local id, lease = ARGV[2], tonumber(ARGV[3])
local snapshot = cjson.decode(ARGV[4])
local now = now_ms()
reap(now)
drop(id)
redis.call('ZADD', p .. 'instances', now + lease, id)
local total = 0
for ip, n in pairs(snapshot.ips) do
  redis.call('HINCRBY', p .. 'ips', ip, n)
  redis.call('HSET', p .. 'inst:' .. id .. ':ips', ip, n)
  total = total + n
end
if total > 0 then redis.call('INCRBY', p .. 'total', total) end
for i = 1, #snapshot.conns do
  local json = snapshot.conns[i]
  local info = decode(json)
  if info and type(info.id) == 'string' then
    forget(info.id, nil)
    remember(id, info.id, json)
  end
end
return 1
`)

/**
 * ARGV: p, instanceId, leaseMs. Reaps expired instances, then extends this
 * instance's lease if it still holds one. Returns 1 extended, 0 lease lost
 * (nothing created: the caller must SYNC to restore its state).
 */
export const REFRESH = script('refresh', `
local id, lease = ARGV[2], tonumber(ARGV[3])
local now = now_ms()
reap(now)
if not live(id, now) then return 0 end
redis.call('ZADD', p .. 'instances', now + lease, id)
return 1
`)

/** ARGV: p, instanceId. Removes the instance and all its state at once. */
export const LEAVE = script('leave', `
drop(ARGV[2])
return 1
`)

/** ARGV: p. The instances whose lease has not run out. */
export const INSTANCES = script('instances', `
return redis.call('ZRANGEBYSCORE', p .. 'instances', '(' .. now_ms(), '+inf')
`)

/**
 * ARGV: p, limit, offset. Returns { count, json... }: the cluster-wide count
 * and one page of connections ordered by client id, read atomically. Sorting
 * every id costs O(n log n) in Redis per call: fine for an admin listing of
 * tens of thousands of connections, not for a hot path.
 */
export const LIST = script('list', `
local limit, offset = tonumber(ARGV[2]), tonumber(ARGV[3])
local ids = redis.call('HKEYS', p .. 'conns')
table.sort(ids)
local out = { #ids }
for i = offset + 1, math.min(#ids, offset + limit) do
  out[#out + 1] = redis.call('HGET', p .. 'conns', ids[i])
end
return out
`)

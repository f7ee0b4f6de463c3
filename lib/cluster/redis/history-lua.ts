/**
 * The history store's scripts; key layout in `keys.ts` (`historyKeys`),
 * epochs in `history-epoch.ts`. Each is one round trip and atomic, so the
 * offset is taken, the frame built with it, stored and trimmed together:
 * no hole in the offsets, no offset without its publication.
 *
 * Time is Redis's TIME, so every instance judges the ttl by one clock.
 * Every key of a topic is written with a ttl (PEXPIRE `ttlMs` after each
 * append, PX `idempotencyWindowMs` for a key), so nothing outlives its
 * retention; the base epoch is the one key without one.
 */
export interface HistoryScript {
  /** The command name ioredis defines on the connection. */
  name: string
  keys: number
  lua: string
}

const PRELUDE = `
if redis.replicate_commands ~= nil then redis.replicate_commands() end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The base of every epoch. A Redis that lost its data (a restart without
-- persistence) has none, so the first script after it makes a new one. On
-- a cluster (store ~= '') the key is the topic's slot's, and holds
-- "<base> <ms>": its data has been there since that moment. A base made
-- now takes the server's start, not now: a slot first used now has lost
-- nothing since then (a restart would have moved its start). Returns the
-- base and that moment (nil on a single Redis).
local function base_epoch(key, fresh, store, now)
  local value = redis.call('GET', key)
  if not value then
    value = fresh
    if store ~= '' then
      local up = tonumber(string.match(redis.call('INFO', 'server'), 'uptime_in_seconds:(%d+)')) or 0
      value = fresh .. ' ' .. (now - up * 1000)
    end
    redis.call('SET', key, value)
  end
  local base, made = string.match(value, '^(%S+) (%d+)$')
  if base then return base, tonumber(made) end
  return value, nil
end

-- The epoch of "empty at this moment" (see history-epoch.ts). On a single
-- Redis it carries the base. On a cluster each slot has its own base, and
-- an empty position read on another topic (another slot) must still hold:
-- it carries the store's name, and the read checks instead that the
-- topic's slot kept its data since that moment (its base is older). The
-- start of a head and the moment may come from two shards' clocks (a
-- position of one topic read on another): a skew makes the check
-- stricter or looser by the skew, as it is never when a topic's own
-- position is read on it.
local function empty_epoch(base, store, now)
  if store ~= '' then return store .. '.' .. now end
  return base .. '.' .. now
end

local function offset_of(id) return tonumber(string.match(id, '^(%d+)')) end
`

/**
 * KEYS: epoch, head, log, idempotency key (unused when ARGV[4] is '0').
 * ARGV: size, ttlMs, windowMs, has key, fresh base, store ('' on a single
 * Redis, see `empty_epoch`), slots, piece 1, piece 2, ...
 * `slots` is a string of 'o' (offset) and 'e' (epoch), one per place the
 * frame builder put them; the frame is piece 1, slot 1, piece 2, ... .
 * Returns { 0, offset, epoch } appended, or { 1, "<offset> <epoch> <frame>" }
 * when the idempotency key was seen.
 */
export const HISTORY_APPEND: HistoryScript = {
  name: 'wsHubHistoryAppend',
  keys: 4,
  lua: `${PRELUDE}
local size, ttl, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local head, log = KEYS[2], KEYS[3]
if ARGV[4] == '1' then
  local seen = redis.call('GET', KEYS[4])
  if seen then return { 1, seen } end
end
local now = now_ms()
local epoch = redis.call('HGET', head, 'e')
if not epoch then
  -- A new life of the topic: whatever is left of an earlier one is not its history.
  epoch = base_epoch(KEYS[1], ARGV[5], ARGV[6], now) .. '.' .. now
  redis.call('DEL', log)
  redis.call('HSET', head, 'e', epoch, 's', now, 'n', 0)
end
local n = redis.call('HINCRBY', head, 'n', 1)
local slots, parts = ARGV[7], { ARGV[8] }
for i = 1, #slots do
  if string.sub(slots, i, i) == 'o' then parts[#parts + 1] = tostring(n) else parts[#parts + 1] = epoch end
  parts[#parts + 1] = ARGV[8 + i]
end
local frame = table.concat(parts)
-- Expired ones go from the front, one at a time: each goes once, so this
-- costs O(1) per append over time. Capped so one script stays short; reads
-- skip any left.
for _ = 1, 100 do
  local first = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)[1]
  if first == nil or now - tonumber(first[2][2]) <= ttl then break end
  redis.call('XTRIM', log, 'MINID', offset_of(first[1]) + 1)
end
redis.call('XADD', log, 'MAXLEN', '=', size, n .. '-0', 't', now, 'f', frame)
redis.call('PEXPIRE', log, ttl)
redis.call('PEXPIRE', head, ttl)
if ARGV[4] == '1' then redis.call('SET', KEYS[4], n .. ' ' .. epoch .. ' ' .. frame, 'PX', window) end
return { 0, n, epoch }
`
}

/**
 * KEYS: epoch, head, log. ARGV: since offset, since epoch, limit, size,
 * ttlMs, fresh base, store. Returns { ok, offset, epoch, frame1, frame2, ... }:
 * ok 1 with every publication after `since`, or ok 0 with none (another
 * epoch, older than kept, more than `limit` behind). Never a partial answer.
 */
export const HISTORY_READ: HistoryScript = {
  name: 'wsHubHistoryRead',
  keys: 3,
  lua: `${PRELUDE}
local since, since_epoch, limit, size, ttl = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local now = now_ms()
local store = ARGV[7]
local base, made = base_epoch(KEYS[1], ARGV[6], store, now)
local head = redis.call('HMGET', KEYS[2], 'e', 'n', 's')
local epoch, n, start = head[1], tonumber(head[2]) or 0, tonumber(head[3])
if not epoch then n = 0 end
local out = { 0, n, epoch or empty_epoch(base, store, now) }
local after = nil
if epoch and since_epoch == epoch then
  after = since
elseif since == 0 then
  -- "Empty at its moment" (see history-epoch.ts): the same data (the same
  -- base; on a cluster, the store's, with the slot's base made before it),
  -- less than ttl ago, and no head then, so a head started since holds everything.
  local seen_base, seen_at = string.match(since_epoch, '^(.*)%.(%d+)$')
  seen_at = tonumber(seen_at)
  local same = seen_base == base
  if store ~= '' then same = seen_base == store and made ~= nil and seen_at ~= nil and made <= seen_at end
  if same and seen_at ~= nil and now - seen_at < ttl and (start == nil or start >= seen_at) then after = 0 end
end
if after == nil or after < 0 or after > n then return out end
local missing = n - after
if missing == 0 then
  out[1] = 1
  return out
end
if missing > limit or missing > size then return out end
local entries = redis.call('XRANGE', KEYS[3], tostring(after + 1), '+', 'COUNT', missing)
if #entries ~= missing then return out end
for i = 1, #entries do
  local e = entries[i]
  if offset_of(e[1]) ~= after + i or now - tonumber(e[2][2]) > ttl then return { 0, n, out[3] } end
  out[#out + 1] = e[2][4]
end
out[1] = 1
return out
`
}

/** KEYS: epoch, head. ARGV: fresh base, store. Returns { offset, epoch }. */
export const HISTORY_POSITION: HistoryScript = {
  name: 'wsHubHistoryPosition',
  keys: 2,
  lua: `${PRELUDE}
local head = redis.call('HMGET', KEYS[2], 'e', 'n')
if head[1] then return { tonumber(head[2]) or 0, head[1] } end
local now = now_ms()
return { 0, empty_epoch(base_epoch(KEYS[1], ARGV[1], ARGV[2], now), ARGV[2], now) }
`
}

export const HISTORY_SCRIPTS: readonly HistoryScript[] = [HISTORY_APPEND, HISTORY_READ, HISTORY_POSITION]

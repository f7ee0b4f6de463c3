/**
 * Every key name the Redis cluster state uses, built here and nowhere else.
 * A move to Redis Cluster is a change of this layout (wrap the prefix in a
 * `{hash tag}` so every key lands in one slot), not of the scripts.
 *
 *   instances             ZSET  instanceId -> lease expiry (ms, Redis clock)
 *   ips                   HASH  ip -> slots held cluster-wide
 *   total                 STR   slots held cluster-wide
 *   users                 HASH  userId -> user slots held cluster-wide
 *   conns                 HASH  clientId -> DirectoryEntry JSON
 *   order                 ZSET  clientId, score 0: the listing's index, in id order
 *   served                STR   when a script of this cluster last ran (ms, Redis clock)
 *   departed              LIST  presence members removed with their instance (see presence-lua.ts)
 *   inst:<id>:ips         HASH  ip -> slots held by that instance
 *   inst:<id>:users       HASH  userId -> user slots held by that instance
 *   inst:<id>:conns       SET   client ids held by that instance
 *   inst:<id>:located     SET   user ids with a connection on that instance
 *   inst:<id>:presence    HASH  "<topic> <clientId>" -> presence user key
 *   user:<userId>         HASH  instanceId -> that user's connections there
 *   presence:<topic>:*    a topic's members (see presence-lua.ts)
 */
export interface KeyLayout {
  /** What the per-instance and per-user keys are derived from, inside the scripts too. */
  prefix: string
  instances: string
  ips: string
  total: string
  users: string
  conns: string
  order: string
  served: string
  departed: string
}

export type FixedKey = Exclude<keyof KeyLayout, 'prefix'>

export function keyLayout (prefix: string): KeyLayout {
  return {
    prefix,
    instances: `${prefix}instances`,
    ips: `${prefix}ips`,
    total: `${prefix}total`,
    users: `${prefix}users`,
    conns: `${prefix}conns`,
    order: `${prefix}order`,
    served: `${prefix}served`,
    departed: `${prefix}departed`
  }
}

export type InstanceKeyKind = 'ips' | 'users' | 'conns' | 'located' | 'presence'

export function instanceKey (prefix: string, instanceId: string, kind: InstanceKeyKind): string {
  return `${prefix}inst:${instanceId}:${kind}`
}

export function userKey (prefix: string, userId: string): string {
  return `${prefix}user:${userId}`
}

/**
 * The same two derivations in Lua, with `P` the prefix (ARGV[1]). Keys named
 * by an id the script only learns while running (an instance found expired
 * during a reap, the user of a stored entry) cannot be passed as KEYS; they
 * are derived here from the prefix, and a hash-tagged prefix keeps them in
 * the slot of the fixed keys.
 */
export const LUA_KEY_FUNCTIONS = `
local function inst_key(id, kind) return P .. 'inst:' .. id .. ':' .. kind end
local function user_key(user) return P .. 'user:' .. user end
`

/**
 * The history store's keys (see `history-lua.ts`). A topic's keys share the
 * hash tag `{<topic>}` (a topic has no braces), so a move to Redis Cluster
 * keeps each topic in one slot; the base epoch is the one key of the store.
 *
 *   history:epoch                 STR     the base of every epoch (see history-epoch.ts); no expiry
 *   history:{<topic>}:head        HASH    n: last offset, e: epoch, s: when the head was created
 *   history:{<topic>}:log         STREAM  id `<offset>-0`; t: when appended (ms), f: the frame text
 *   history:{<topic>}:key:<key>   STR     "<offset> <epoch> <frame>" of the first publish with that idempotency key
 */
export interface HistoryKeys {
  epoch: string
  head: string
  log: string
}

export function historyKeys (prefix: string, topic: string): HistoryKeys {
  const tag = `${prefix}history:{${topic}}:`
  return { epoch: `${prefix}history:epoch`, head: `${tag}head`, log: `${tag}log` }
}

export function historyIdempotencyKey (prefix: string, topic: string, key: string): string {
  return `${prefix}history:{${topic}}:key:${key}`
}

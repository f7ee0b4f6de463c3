import { OptionsError } from '../../errors.js'
import { SLOT_COUNT, keySlot } from './cluster/slot.js'

/**
 * Every key name the Redis cluster state uses, built here and nowhere else.
 *
 * On a Redis Cluster the prefix is wrapped in a hash tag (`ws-hub:` becomes
 * `{ws-hub:}`, see `registryPrefix`), so every key below is in one slot.
 * It has to be: a reservation checks an IP's, a user's and the total count
 * in one atomic script, a reap removes a dead instance from all of them at
 * once, and presence scripts check the lease and write the instance's and
 * the topic's keys together (see presence-lua.ts). Spread over slots, a
 * script could not touch them (CROSSSLOT), and splitting it into several
 * would lose the atomicity the limits rest on. The cost is that every
 * registry operation goes to one shard; none is on the per-message path:
 * a handshake (reserve, add), a disconnect (release, remove), a presence
 * subscribe or unsubscribe, a listing, and each instance's renewal and
 * departure poll once per `leaseMs / 3`. On a single Redis the prefix is
 * used as is, so existing keys stay where they are.
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

/**
 * The registry's prefix on a single Redis (as given) or on a cluster
 * (hash-tagged, see above). A cluster needs a non-empty prefix without
 * braces: `{}` is no hash tag, and braces of the user's would move it.
 */
export function registryPrefix (prefix: string, cluster: boolean): string {
  if (!cluster) return prefix
  checkClusterPrefix(prefix, 'registry')
  if (prefix === '') throw new OptionsError('fastify-ws-hub: option "registry.keyPrefix" must not be empty on a Redis Cluster: it is the hash tag that keeps the registry\'s keys in one slot')
  return `{${prefix}}`
}

/** On a cluster the hub places the hash tags; a brace in the prefix would replace them. */
export function checkClusterPrefix (prefix: string, option: 'registry' | 'history'): void {
  if (prefix.includes('{') || prefix.includes('}')) {
    throw new OptionsError(`fastify-ws-hub: option "${option}.keyPrefix" must not contain "{" or "}" on a Redis Cluster (got ${JSON.stringify(prefix)}): the hub places the hash tags`)
  }
}

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
 * hash tag `{<topic>}` (a topic has no braces), so on a Redis Cluster each
 * topic is in one slot, and topics spread over the shards.
 *
 *   history:epoch                 STR     the base of every epoch (see history-epoch.ts); no expiry
 *   history:epoch:{<tag>}         STR     the same, on a cluster: one per slot, <tag> hashing to the topic's slot
 *   history:{<topic>}:head        HASH    n: last offset, e: epoch, s: when the head was created
 *   history:{<topic>}:log         STREAM  id `<offset>-0`; t: when appended (ms), f: the frame text
 *   history:{<topic>}:key:<key>   STR     "<offset> <epoch> <frame>" of the first publish with that idempotency key
 *
 * Every script reads the base epoch with a topic's keys, so on a cluster
 * the base must be in the topic's slot (one key of every slot would be
 * CROSSSLOT). It is kept per slot, not per topic: at most 16,384 keys
 * however many topics come and go, none of them left behind per topic.
 * And per slot is what it means: the base changes when the data it
 * vouches for is lost, and on a cluster a shard restarted without
 * persistence loses its own slots only. (Reading one shared base in a
 * command of its own first would not do: a shard could lose a topic's
 * publications while the base, on another shard, stays.)
 */
export interface HistoryKeys {
  epoch: string
  head: string
  log: string
}

export function historyKeys (prefix: string, topic: string, cluster = false): HistoryKeys {
  const tag = `${prefix}history:{${topic}}:`
  const head = `${tag}head`
  const epoch = cluster ? `${prefix}history:epoch:{${slotTag(keySlot(head))}}` : `${prefix}history:epoch`
  return { epoch, head, log: `${tag}log` }
}

let slotTags: string[] | null = null

/**
 * A short name whose own slot is `slot`: the shortest base-36 number that
 * hashes there. The table is made once per process, in a few ms (about
 * 170,000 CRC16s of 1 to 4 bytes), and is the same in every process.
 */
export function slotTag (slot: number): string {
  if (slotTags === null) {
    const tags = new Array<string>(SLOT_COUNT)
    let missing = SLOT_COUNT
    for (let n = 0; missing > 0; n++) {
      const name = n.toString(36)
      const s = keySlot(name)
      if (tags[s] === undefined) {
        tags[s] = name
        missing--
      }
    }
    slotTags = tags
  }
  const tag = slotTags[slot]
  if (tag === undefined) throw new RangeError(`no Redis Cluster slot ${slot}`)
  return tag
}

export function historyIdempotencyKey (prefix: string, topic: string, key: string): string {
  return `${prefix}history:{${topic}}:key:${key}`
}

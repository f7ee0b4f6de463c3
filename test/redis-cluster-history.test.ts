import t from 'tap'
import type { History } from '../lib/cluster/history.js'
import { RedisHistory } from '../lib/cluster/redis/redis-history.js'
import { historyKeys, slotTag } from '../lib/cluster/redis/keys.js'
import { SLOT_COUNT, keySlot } from '../lib/cluster/redis/cluster/slot.js'
import { defaultHistory, normalizeRegistry } from '../lib/options/backend-options.js'
import { historySuite } from '../lib/testing/history-suite.js'
import { redisClusterNodes } from './helpers/redis-cluster.js'
import { adminCluster, clusterKeys, deleteClusterKeys } from './helpers/redis-cluster-states.js'
import { recordingLogger, uniquePrefix } from './helpers/redis-server.js'

const nodes = redisClusterNodes(t)
const { log: quiet } = recordingLogger()
const retention = { size: 100, ttlMs: 60_000 }
const append = async (history: History, topic: string, idempotencyKey?: string) => await history.append({
  topic,
  retention,
  frame: (p) => JSON.stringify({ type: 'publish', topic, offset: p.offset, epoch: p.epoch }),
  idempotencyWindowMs: 60_000,
  ...(idempotencyKey === undefined ? {} : { idempotencyKey })
})

t.test('a slot tag hashes to its slot, for every slot', async (t) => {
  let wrong = 0
  for (let slot = 0; slot < SLOT_COUNT; slot++) if (keySlot(`x{${slotTag(slot)}}`) !== slot) wrong++
  t.equal(wrong, 0)
  t.equal(historyKeys('p:', 'room', false).epoch, 'p:history:epoch', 'a single Redis keeps its one base epoch key')
})

t.test('the history store defaults to the registry\'s cluster', async (t) => {
  const cluster = { nodes: ['127.0.0.1:17000'] }
  const registry = normalizeRegistry({ type: 'redis', cluster, keyPrefix: 'app:' })
  t.match(defaultHistory(registry), { type: 'redis', cluster, keyPrefix: 'app:' })
})

if (nodes !== null) {
  historySuite(t, 'redis cluster history', {
    open: async (t) => {
      const prefix = uniquePrefix('cluster-history')
      const admin = adminCluster(t, nodes)
      const stores: RedisHistory[] = []
      t.teardown(async () => {
        await Promise.all(stores.map(async (store) => await store.close()))
        await deleteClusterKeys(admin, `${prefix}*`)
      })
      return async () => {
        const store = new RedisHistory({ cluster: { nodes }, keyPrefix: prefix }, quiet)
        stores.push(store)
        return store
      }
    }
  })

  t.test('redis cluster history: a topic\'s keys and its base epoch share its slot; topics spread over the slots', async (t) => {
    const prefix = uniquePrefix('cluster-history-slot')
    const admin = adminCluster(t, nodes)
    const history = new RedisHistory({ cluster: { nodes }, keyPrefix: prefix }, quiet)
    t.teardown(async () => { await history.close(); await deleteClusterKeys(admin, `${prefix}*`) })
    const topics = Array.from({ length: 8 }, (_, n) => `room:${n}`)
    for (const topic of topics) await append(history, topic, 'k')
    const keys = await clusterKeys(admin, `${prefix}*`)
    const slotOf = new Map<string, number>()
    for (const key of keys) slotOf.set(key, Number(await admin.call('CLUSTER', 'KEYSLOT', key)))
    const topicSlots = new Set<number>()
    for (const topic of topics) {
      const mine = keys.filter((key) => key.includes(`{${topic}}`))
      t.equal(mine.length, 3, `${topic}: head, log and the idempotency key`)
      const slots = new Set(mine.map((key) => slotOf.get(key)))
      const epoch = historyKeys(prefix, topic, true).epoch
      t.ok(keys.includes(epoch), `${topic}: its slot's base epoch is stored`)
      slots.add(slotOf.get(epoch))
      t.equal(slots.size, 1, `${topic}: one slot`)
      for (const slot of slots) if (slot !== undefined) topicSlots.add(slot)
    }
    t.ok(topicSlots.size >= 6, `8 topics on ${topicSlots.size} slots`)
    // The admin's slot map names each slot's master as host:port.
    const masters = new Set([...topicSlots].map((slot) => admin.slots[slot]?.[0]))
    t.ok(masters.size >= 2, `8 topics on ${masters.size} shards`)
  })

  t.test('redis cluster history: a prefix with braces is refused', async (t) => {
    t.throws(() => new RedisHistory({ cluster: { nodes }, keyPrefix: '{x}' }, quiet), { name: 'OptionsError', message: /must not contain/ })
  })
}

/**
 * The Redis Cluster test infrastructure against real redis-server nodes:
 * the shared cluster (REDIS_CLUSTER_NODES, started by .ci/run or
 * `bash scripts/redis-cluster.sh start`) has every slot served by three
 * masters with a replica each, an ioredis Cluster reads and writes on every
 * shard and carries sharded pub/sub; a private cluster (PrivateRedisCluster)
 * fails over when a master crashes, takes the crashed node back as a replica,
 * and freezes and thaws nodes. A client made before a failover keeps working.
 */
import t, { type Test as Tap } from 'tap'
import { Cluster, Redis } from 'ioredis'
import { until } from './helpers.js'
import { needsRedisServer, uniquePrefix } from './helpers/redis-server.js'
import { parseClusterNodes, PrivateRedisCluster, redisClusterNodes, type ClusterAddress, type ClusterNode } from './helpers/redis-cluster.js'

const ALL_SLOTS = 16384
/** cluster-node-timeout is 2 s: detection (one timeout plus gossip) and the election fit well inside this. */
const FAILOVER_BOUND_MS = 15_000

/**
 * An ioredis Cluster for the test, closed at its end. Sharded pub/sub needs
 * `shardedSubscribers: true` (one subscriber connection per master): without
 * it, SSUBSCRIBE goes to one node and a channel of another shard never settles.
 */
function clusterClient (t: Tap, nodes: ClusterAddress[], options: { shardedSubscribers?: boolean } = {}): Cluster {
  const client = new Cluster(nodes, { shardedSubscribers: options.shardedSubscribers ?? false })
  client.on('error', () => {}) // node errors during a failover; the commands' own results are asserted
  t.teardown(() => { client.disconnect() })
  return client
}

function masterOfSlot (nodes: ClusterNode[], slot: number): ClusterNode | undefined {
  return nodes.find((n) => n.role === 'master' && !n.failed && n.slots.some(([from, to]) => slot >= from && slot <= to))
}

/** Keys under `prefix`, one per master, each with the master that serves it. */
async function keyPerShard (client: Cluster, nodes: ClusterNode[], prefix: string): Promise<Map<string, ClusterNode>> {
  const byMaster = new Map<string, { key: string, master: ClusterNode }>()
  for (let i = 0; byMaster.size < 3 && i < 1000; i++) {
    const key = `${prefix}${i}`
    const master = masterOfSlot(nodes, Number(await client.cluster('KEYSLOT', key)))
    if (master !== undefined && !byMaster.has(master.id)) byMaster.set(master.id, { key, master })
  }
  return new Map([...byMaster.values()].map(({ key, master }) => [key, master]))
}

function checkShape (t: Tap, nodes: ClusterNode[]): void {
  const masters = nodes.filter((n) => n.role === 'master' && !n.failed && n.slots.length > 0)
  t.equal(masters.length, 3, 'three masters serve slots')
  const served = masters.flatMap((m) => m.slots).reduce((sum, [from, to]) => sum + to - from + 1, 0)
  t.equal(served, ALL_SLOTS, 'the masters serve all 16384 slots')
  for (const master of masters) {
    t.ok(nodes.some((n) => n.role === 'replica' && n.masterId === master.id && !n.failed && n.connected), `master :${master.port} has a connected replica`)
  }
}

t.test('the shared cluster (REDIS_CLUSTER_NODES)', async (t) => {
  const nodes = redisClusterNodes(t)
  if (nodes === null) return
  const first = nodes[0]
  if (first === undefined) throw new Error('REDIS_CLUSTER_NODES is empty')

  const admin = new Redis({ host: first.host, port: first.port, maxRetriesPerRequest: 1 })
  t.teardown(() => admin.quit())

  t.test('answers with all slots, three masters and a replica each', async (t) => {
    const info = String(await admin.call('CLUSTER', 'INFO'))
    t.match(info, /cluster_state:ok/)
    t.match(info, /cluster_slots_ok:16384/)
    const view = parseClusterNodes(String(await admin.call('CLUSTER', 'NODES')))
    t.equal(view.length, nodes.length, 'every node of REDIS_CLUSTER_NODES is in the cluster')
    checkShape(t, view)
  })

  t.test('an ioredis Cluster sets and gets keys on every shard', async (t) => {
    const client = clusterClient(t, nodes)
    const view = parseClusterNodes(String(await admin.call('CLUSTER', 'NODES')))
    const keys = await keyPerShard(client, view, uniquePrefix('cluster-infra'))
    t.equal(keys.size, 3, 'one key on each of the three masters')
    t.teardown(async () => { for (const key of keys.keys()) await client.del(key) })
    for (const [key, master] of keys) {
      t.equal(await client.set(key, `on ${master.port}`, 'PX', 60_000), 'OK')
      t.equal(await client.get(key), `on ${master.port}`)
      // The value really lives on that master: asked directly, it answers (no MOVED).
      const direct = new Redis({ host: master.host, port: master.port, maxRetriesPerRequest: 1 })
      t.equal(await direct.get(key), `on ${master.port}`, `${key} is stored on :${master.port}`)
      await direct.quit()
    }
  })

  t.test('SSUBSCRIBE and SPUBLISH carry messages on every shard (shardedSubscribers: true)', async (t) => {
    const subscriber = clusterClient(t, nodes, { shardedSubscribers: true })
    const publisher = clusterClient(t, nodes)
    const view = parseClusterNodes(String(await admin.call('CLUSTER', 'NODES')))
    const channels = [...(await keyPerShard(publisher, view, uniquePrefix('cluster-infra-ch'))).keys()]
    t.equal(channels.length, 3, 'one channel on each shard')

    const received: string[] = []
    subscriber.on('smessage', (channel: string, message: string) => { received.push(`${channel} ${message}`) })
    // One call per channel: ioredis rejects channels of several slots in one SSUBSCRIBE.
    for (const channel of channels) await subscriber.ssubscribe(channel)
    await t.rejects(subscriber.ssubscribe(...channels), /CROSSSLOT/, 'channels of several slots in one call are refused')

    for (const channel of channels) {
      // The count is the shard's subscribers: SSUBSCRIBE resolved once the master confirmed it.
      t.equal(await publisher.spublish(channel, 'hello'), 1, `SPUBLISH ${channel} reaches one subscriber`)
    }
    await until(() => received.length === channels.length, 5_000, 'the sharded messages')
    t.same(received.sort(), channels.map((c) => `${c} hello`).sort())
  })
})

t.test('a private cluster fails over, takes a crashed node back, freezes and thaws', { skip: needsRedisServer() }, async (t) => {
  const cluster = await PrivateRedisCluster.start(t)
  checkShape(t, await cluster.nodes())
  t.equal((await cluster.masters()).length, 3)
  t.equal((await cluster.replicas()).length, 3)

  const client = clusterClient(t, cluster.addresses)
  const subscriber = clusterClient(t, cluster.addresses, { shardedSubscribers: true })
  const keys = await keyPerShard(client, await cluster.nodes(), uniquePrefix('cluster-failover'))
  const [victimKey, victim] = [...keys][0] ?? []
  if (victimKey === undefined || victim === undefined) throw new Error('no key on any master')

  // Written on the victim itself and acknowledged by its replica (WAIT), so
  // the failover cannot lose it.
  const direct = new Redis({ host: victim.host, port: victim.port, maxRetriesPerRequest: 1 })
  await direct.set(victimKey, 'before')
  t.equal(await direct.call('WAIT', '1', '5000'), 1, 'the replica has the key')
  direct.disconnect()

  const received: string[] = []
  subscriber.on('smessage', (_channel: string, message: string) => { received.push(message) })
  await subscriber.ssubscribe(victimKey)
  t.equal(await client.spublish(victimKey, 'before'), 1)
  await until(() => received.includes('before'), 5_000, 'the message before the failover')

  const replicaPorts = (await cluster.replicas()).filter((r) => r.masterId === victim.id).map((r) => r.port)
  const { failoverMs, promotedPort } = await cluster.killMaster(victim.port)
  t.comment(`failover of :${victim.port} to :${promotedPort} took ${failoverMs} ms (cluster-node-timeout ${cluster.nodeTimeoutMs} ms)`)
  t.ok(failoverMs < FAILOVER_BOUND_MS, `failover within ${FAILOVER_BOUND_MS} ms (${failoverMs} ms)`)
  t.ok(replicaPorts.includes(promotedPort), 'the victim\'s own replica was promoted')
  t.ok((await cluster.masters()).some((m) => m.port === promotedPort), 'the promoted replica is a master')

  t.equal(await client.get(victimKey), 'before', 'the client made before the crash reads the key from the new master')
  t.equal(await client.set(victimKey, 'after'), 'OK', 'and writes to it')
  t.equal(await client.get(victimKey), 'after')
  for (const key of keys.keys()) t.equal(await client.set(key, 'x', 'PX', 60_000), 'OK', `${key} writable after the failover`)

  // The sharded subscriber made before the failover gets messages again once
  // ioredis has seen the new slot owner and subscribed there (its slots refresh).
  const resubscribing = performance.now()
  while (!received.includes('after') && performance.now() - resubscribing < 10_000) {
    await client.spublish(victimKey, 'after')
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  t.ok(received.includes('after'), 'the sharded subscription works again after the failover')
  t.comment(`the sharded subscriber had messages again ${Math.round(performance.now() - resubscribing)} ms after the failover`)

  await cluster.restart(victim.port)
  const rejoined = (await cluster.nodes()).find((n) => n.port === victim.port)
  t.equal(rejoined?.role, 'replica', 'the crashed master came back as a replica')
  checkShape(t, await cluster.nodes())

  const frozen = (await cluster.replicas())[0]
  if (frozen === undefined) throw new Error('no replica')
  cluster.pause(frozen.port)
  const probe = new Redis({ host: frozen.host, port: frozen.port, maxRetriesPerRequest: 0, commandTimeout: 300, retryStrategy: () => null })
  probe.on('error', () => {})
  await t.rejects(probe.ping(), /timed out/i, 'a paused node does not answer')
  cluster.resume(frozen.port)
  probe.disconnect()
  const thawed = new Redis({ host: frozen.host, port: frozen.port, maxRetriesPerRequest: 1 })
  t.equal(await thawed.ping(), 'PONG', 'a resumed node answers')
  thawed.disconnect()
})

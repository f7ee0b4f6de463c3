/** The contract every Registry backend must pass. */
import type { Registry } from '../cluster/registry.js'
import type { ConnectionInfo } from '../connections/connection.js'
import type { TapLike } from './transport-suite.js'

export interface RegistryFactory {
  /**
   * Registries that share state (two instances of one cluster). Each call
   * returns a registry view for one instance; all share one fresh namespace
   * per test.
   */
  cluster: (t: TapLike) => Promise<(instanceId: string) => Promise<Registry>>
}

const info = (id: string, instanceId: string, userId: string | null = null, ip = '10.0.0.1'): ConnectionInfo => ({
  id, ip, userId, topics: [], connectedAt: new Date(0).toISOString(), instanceId
})

export function registrySuite (t: TapLike, name: string, factory: RegistryFactory): void {
  t.test(`${name}: reserve is atomic under concurrency and honours both limits`, async (t) => {
    const registry = await (await factory.cluster(t))('i1')
    const results = await Promise.all(Array.from({ length: 50 }, async () => registry.reserve('1.2.3.4', { perIp: 7, total: 100 })))
    t.equal(results.filter((r) => r.ok).length, 7, 'exactly the per-IP limit succeed')
    t.same(results.find((r) => !r.ok), { ok: false, reason: 'ip_limit' })
    t.equal(await registry.ipCount('1.2.3.4'), 7)
    const others = await Promise.all(Array.from({ length: 10 }, async (_, n) => registry.reserve(`5.5.5.${n}`, { perIp: 7, total: 10 })))
    t.equal(others.filter((r) => r.ok).length, 3, 'the total limit caps the rest')
    t.same(others.find((r) => !r.ok), { ok: false, reason: 'total_limit' })
    t.equal(await registry.totalCount(), 10)
  })

  t.test(`${name}: release returns slots and never goes negative`, async (t) => {
    const registry = await (await factory.cluster(t))('i1')
    await registry.reserve('1.1.1.1', { perIp: 5, total: 5 })
    await registry.reserve('1.1.1.1', { perIp: 5, total: 5 })
    await registry.release('1.1.1.1')
    t.equal(await registry.ipCount('1.1.1.1'), 1)
    await registry.release('1.1.1.1')
    await registry.release('1.1.1.1')
    await registry.release('9.9.9.9')
    t.equal(await registry.ipCount('1.1.1.1'), 0)
    t.equal(await registry.totalCount(), 0)
  })

  t.test(`${name}: limits hold across instances of one cluster`, async (t) => {
    const view = await factory.cluster(t)
    const a = await view('ia')
    const b = await view('ib')
    const limits = { perIp: 3, total: 100 }
    const results = await Promise.all([
      ...Array.from({ length: 5 }, async () => a.reserve('7.7.7.7', limits)),
      ...Array.from({ length: 5 }, async () => b.reserve('7.7.7.7', limits))
    ])
    t.equal(results.filter((r) => r.ok).length, 3)
    t.equal(await a.ipCount('7.7.7.7'), 3)
    t.equal(await b.ipCount('7.7.7.7'), 3)
  })

  t.test(`${name}: locates clients and users across instances`, async (t) => {
    const view = await factory.cluster(t)
    const a = await view('ia')
    const b = await view('ib')
    await a.add(info('c1', 'ia', 'alice'))
    await b.add(info('c2', 'ib', 'alice'))
    await b.add(info('c3', 'ib', 'bob'))
    t.equal(await a.locate('c2'), 'ib')
    t.equal(await b.locate('c1'), 'ia')
    t.equal(await a.locate('nope'), null)
    t.same((await a.locateUser('alice')).sort(), ['ia', 'ib'])
    t.same(await a.locateUser('bob'), ['ib'])
    t.same(await a.locateUser('carol'), [])
    await b.remove('c2')
    t.same(await a.locateUser('alice'), ['ia'])
    t.equal(await a.locate('c2'), null)
  })

  t.test(`${name}: lists the whole cluster with paging, and updates topics`, async (t) => {
    const view = await factory.cluster(t)
    const a = await view('ia')
    const b = await view('ib')
    for (let n = 0; n < 5; n++) await a.add(info(`a${n}`, 'ia'))
    for (let n = 0; n < 4; n++) await b.add(info(`b${n}`, 'ib'))
    const first = await a.list({ limit: 4, offset: 0 })
    const rest = await a.list({ limit: 10, offset: 4 })
    t.equal(first.count, 9)
    t.equal(first.connections.length, 4)
    t.equal(rest.connections.length, 5)
    const ids = [...first.connections, ...rest.connections].map((c) => c.id).sort()
    t.same(ids, ['a0', 'a1', 'a2', 'a3', 'a4', 'b0', 'b1', 'b2', 'b3'], 'pages neither repeat nor skip')
    await b.update({ ...info('b0', 'ib'), topics: ['news'] })
    const all = await a.list({ limit: 100, offset: 0 })
    t.same(all.connections.find((c) => c.id === 'b0')?.topics, ['news'])
    t.equal(all.connections.find((c) => c.id === 'b0')?.instanceId, 'ib')
  })

  t.test(`${name}: instances join and leave`, async (t) => {
    const view = await factory.cluster(t)
    const a = await view('ia')
    const b = await view('ib')
    await a.join('ia')
    await b.join('ib')
    t.same((await a.instances()).sort(), ['ia', 'ib'])
    await b.leave('ib')
    t.same(await a.instances(), ['ia'])
  })
}

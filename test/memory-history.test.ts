import t from 'tap'
import { MemoryHistory } from '../lib/cluster/memory/memory-history.js'
import { eventually } from '../lib/testing/cluster-state-factory.js'
import { historySuite } from '../lib/testing/history-suite.js'

historySuite(t, 'memory history', {
  // One process is one instance: every caller shares the store.
  open: async (t) => {
    const history = new MemoryHistory()
    t.teardown(() => history.close())
    return async () => history
  }
})

t.test('memory history: nothing is held once its ttl and window have passed', async (t) => {
  const history = new MemoryHistory()
  t.teardown(() => history.close())
  for (let i = 0; i < 50; i++) {
    await history.append({ topic: `user:${i}`, retention: { size: 10, ttlMs: 100 }, frame: (p) => String(p.offset), idempotencyKey: `k${i}`, idempotencyWindowMs: 100 })
  }
  t.same(history.retained, { topics: 50, idempotencyKeys: 50 })
  // The sweep runs every second; nobody reads these topics again.
  await eventually(async () => history.retained.topics === 0 && history.retained.idempotencyKeys === 0, 5_000, 'the sweep')
})

t.test('memory history: a new store is a new epoch', async (t) => {
  const a = new MemoryHistory()
  const b = new MemoryHistory()
  t.teardown(async () => { await a.close(); await b.close() })
  const retention = { size: 10, ttlMs: 60_000 }
  const first = await a.append({ topic: 't', retention, frame: () => '', idempotencyWindowMs: 1 })
  const restarted = await b.append({ topic: 't', retention, frame: () => '', idempotencyWindowMs: 1 })
  t.not(first.epoch, restarted.epoch)
  t.same(await b.read('t', { offset: 0, epoch: first.epoch }, 10, retention), { ok: false, position: { offset: 1, epoch: restarted.epoch } })
})

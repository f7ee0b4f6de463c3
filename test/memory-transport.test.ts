import t from 'tap'
import { MemoryBus, MemoryTransport } from '../lib/cluster/memory/memory-transport.js'
import { transportSuite } from '../lib/testing/transport-suite.js'

const bus = new MemoryBus()
transportSuite(t, 'memory transport', { create: () => new MemoryTransport(bus) })

t.test('transports on different buses do not hear each other', async (t) => {
  const a = new MemoryTransport(new MemoryBus())
  const b = new MemoryTransport(new MemoryBus())
  const got: unknown[] = []
  await a.start('a', () => {})
  await b.start('b', (envelope) => got.push(envelope))
  t.teardown(async () => { await a.close(); await b.close() })
  await a.publish({ type: 'deliver', origin: 'a', target: { kind: 'all' }, frame: '{}' })
  // The bus emits in a microtask: by the next macrotask it has delivered or never will.
  await new Promise<void>((resolve) => setImmediate(resolve))
  t.same(got, [])
})

/**
 * The contract every History backend must pass. A backend's test file
 * calls `historySuite` with a factory; e.g.
 * `historySuite(t, 'my history', { open: async () => async () => new MyHistory() })`.
 */
import type { AppendResult, History, HistoryRetention, StreamPosition } from '../cluster/history.js'
import type { TapLike } from './tap-like.js'
import { eventually } from './cluster-state-factory.js'

export interface HistoryFactory {
  /**
   * One fresh namespace per test; each call of the function it resolves to
   * is another instance's store on that namespace (the same store is fine
   * for a backend of one process). The factory closes them when the test ends.
   */
  open: (t: TapLike) => Promise<() => Promise<History>>
}

const KEEP: HistoryRetention = { size: 1_000, ttlMs: 60_000 }
const WINDOW_MS = 60_000

/** A frame that carries its position, as the hub's publish frames do. */
const frameOf = (message: unknown) => (position: StreamPosition): string =>
  JSON.stringify({ type: 'publish', topic: 't', message, offset: position.offset, epoch: position.epoch })

async function publish (history: History, topic: string, message: unknown, retention = KEEP, idempotencyKey?: string, windowMs = WINDOW_MS): Promise<AppendResult> {
  const request = { topic, retention, frame: frameOf(message), idempotencyWindowMs: windowMs }
  return await history.append(idempotencyKey === undefined ? request : { ...request, idempotencyKey })
}

async function publishMany (history: History, topic: string, count: number, retention = KEEP): Promise<AppendResult[]> {
  const results: AppendResult[] = []
  for (let i = 1; i <= count; i++) results.push(await publish(history, topic, i, retention))
  return results
}

const offsets = (results: ReadonlyArray<{ offset: number }>): number[] => results.map((r) => r.offset)
const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i)

export function historySuite (t: TapLike, name: string, factory: HistoryFactory): void {
  t.test(`${name}: offsets start at 1 and the frame carries its own position`, async (t) => {
    const history = await (await factory.open(t))()
    const empty = await history.position('t')
    t.equal(empty.offset, 0, 'the current offset is 0 before the first publication')
    t.equal(typeof empty.epoch, 'string')
    const first = await publish(history, 't', 'hello')
    t.same({ offset: first.offset, duplicate: first.duplicate }, { offset: 1, duplicate: false })
    t.equal(first.frame, frameOf('hello')(first), 'the frame was built with the real offset and epoch')
    t.same(await history.position('t'), { offset: 1, epoch: first.epoch })
    const second = await publish(history, 't', 'again')
    t.same({ offset: second.offset, epoch: second.epoch }, { offset: 2, epoch: first.epoch })
    t.equal((await history.position('other')).offset, 0, 'topics are apart')
  })

  t.test(`${name}: 200 concurrent appends from two instances get 1..200, no gap, no duplicate`, async (t) => {
    const open = await factory.open(t)
    const [a, b] = [await open(), await open()]
    const results = await Promise.all(range(1, 200).map(async (i) => await publish(i % 2 === 0 ? a : b, 't', i)))
    t.same(offsets(results).sort((x, y) => x - y), range(1, 200))
    t.equal(new Set(results.map((r) => r.epoch)).size, 1, 'one epoch')
    const epoch = results[0]?.epoch ?? ''
    const read = await a.read('t', { offset: 0, epoch }, 200, KEEP)
    t.ok(read.ok, 'the whole stream reads back')
    if (!read.ok) return
    t.same(offsets(read.publications), range(1, 200), 'in offset order')
    const byOffset = new Map(results.map((r) => [r.offset, r.frame]))
    t.ok(read.publications.every((p) => byOffset.get(p.offset) === p.frame), 'each stored frame is the one append returned')
    t.same(read.position, { offset: 200, epoch })
  })

  t.test(`${name}: read returns what follows a position, or says it cannot`, async (t) => {
    const history = await (await factory.open(t))()
    const results = await publishMany(history, 't', 10)
    const epoch = results[0]?.epoch ?? ''
    const after7 = await history.read('t', { offset: 7, epoch }, 100, KEEP)
    t.same(after7, { ok: true, publications: results.slice(7).map(({ offset, frame }) => ({ offset, frame })), position: { offset: 10, epoch } })
    t.same(await history.read('t', { offset: 10, epoch }, 100, KEEP), { ok: true, publications: [], position: { offset: 10, epoch } }, 'nothing after the current offset')
    t.same(await history.read('t', { offset: 7, epoch }, 3, KEEP), after7, 'exactly limit behind')
    t.same(await history.read('t', { offset: 6, epoch }, 3, KEEP), { ok: false, position: { offset: 10, epoch } }, 'more than limit behind: nothing, not a part')
    t.same(await history.read('t', { offset: 3, epoch: `${epoch}x` }, 100, KEEP), { ok: false, position: { offset: 10, epoch } }, 'another epoch')
    t.same(await history.read('t', { offset: 11, epoch }, 100, KEEP), { ok: false, position: { offset: 10, epoch } }, 'ahead of the stream')
    t.same(await history.read('t', { offset: -1, epoch }, 100, KEEP), { ok: false, position: { offset: 10, epoch } }, 'not an offset')
    t.same(await history.read('t', { offset: 2.5, epoch }, 100, KEEP), { ok: false, position: { offset: 10, epoch } }, 'not an integer')
  })

  t.test(`${name}: the position of an empty topic reads its first publications`, async (t) => {
    const open = await factory.open(t)
    const [a, b] = [await open(), await open()]
    const before = await a.position('t')
    const results = await publishMany(b, 't', 3)
    const read = await a.read('t', before, 100, KEEP)
    t.same(read, { ok: true, publications: results.map(({ offset, frame }) => ({ offset, frame })), position: { offset: 3, epoch: results[0]?.epoch } },
      'offset 1 of the new epoch follows offset 0 of the empty one')
    t.same(await a.read('t', { offset: 0, epoch: 'another-store.1' }, 100, KEEP), { ok: false, position: { offset: 3, epoch: results[0]?.epoch } },
      'an empty position of another store (or a lost one) does not')
    const empty = await a.read('quiet', before, 100, KEEP)
    t.ok(empty.ok && empty.publications.length === 0 && empty.position.offset === 0, 'an empty topic read from an empty position')
  })

  t.test(`${name}: size keeps the last N`, async (t) => {
    const history = await (await factory.open(t))()
    const retention = { size: 5, ttlMs: 60_000 }
    const results = await publishMany(history, 't', 12, retention)
    const epoch = results[0]?.epoch ?? ''
    const kept = await history.read('t', { offset: 7, epoch }, 100, retention)
    t.same(kept.ok && offsets(kept.publications), range(8, 12), 'the last 5')
    t.same(await history.read('t', { offset: 6, epoch }, 100, retention), { ok: false, position: { offset: 12, epoch } }, 'offset 7 is gone: a gap')
    t.same(await history.read('t', { offset: 0, epoch }, 100, retention), { ok: false, position: { offset: 12, epoch } })
  })

  t.test(`${name}: nothing older than ttlMs is returned, and an expired topic starts a new epoch`, async (t) => {
    const history = await (await factory.open(t))()
    const retention = { size: 100, ttlMs: 300 }
    const old = await publish(history, 't', 'old', retention)
    await eventually(async () => !(await history.read('t', { offset: 0, epoch: old.epoch }, 100, retention)).ok, 5_000, 'the publication to expire')
    await eventually(async () => (await history.position('t')).offset === 0, 5_000, 'the topic to hold nothing')
    const fresh = await publish(history, 't', 'new', retention)
    t.equal(fresh.offset, 1, 'offsets start again')
    t.not(fresh.epoch, old.epoch, 'under a new epoch: the old offset 1 is not this one')
    t.same(await history.read('t', { offset: 1, epoch: old.epoch }, 100, retention), { ok: false, position: { offset: 1, epoch: fresh.epoch } })
  })

  t.test(`${name}: a publish with a seen idempotency key is not appended again`, async (t) => {
    const open = await factory.open(t)
    const [a, b] = [await open(), await open()]
    const first = await publish(a, 't', 'pay', KEEP, 'k1')
    const again = await publish(b, 't', 'pay (retry)', KEEP, 'k1')
    t.same(again, { ...first, duplicate: true }, 'answers as the first did, from another instance too')
    t.same(await a.position('t'), { offset: 1, epoch: first.epoch }, 'nothing appended')
    t.equal((await publish(a, 't', 'other', KEEP, 'k2')).offset, 2, 'another key is another publish')
    t.equal((await publish(a, 't', 'no key')).offset, 3)
    t.equal((await publish(a, 'elsewhere', 'pay', KEEP, 'k1')).duplicate, false, 'keys are per topic')
  })

  t.test(`${name}: concurrent publishes with one key append exactly one`, async (t) => {
    const open = await factory.open(t)
    const [a, b] = [await open(), await open()]
    const results = await Promise.all(range(1, 20).map(async (i) => await publish(i % 2 === 0 ? a : b, 't', i, KEEP, 'same')))
    t.equal(results.filter((r) => !r.duplicate).length, 1, 'one appended')
    t.same(new Set(results.map((r) => `${r.offset} ${r.epoch} ${r.frame}`)).size, 1, 'all answer with its position and frame')
    t.equal((await a.position('t')).offset, 1)
  })

  t.test(`${name}: an idempotency key is forgotten after its window`, async (t) => {
    const history = await (await factory.open(t))()
    const first = await publish(history, 't', 'x', KEEP, 'k', 200)
    await eventually(async () => {
      const next = await publish(history, 't', 'x', KEEP, 'k', 200)
      return !next.duplicate
    }, 5_000, 'the key to expire')
    t.equal((await history.position('t')).offset, first.offset + 1, 'published once more after the window')
  })

  t.test(`${name}: a frame builder that throws appends nothing`, async (t) => {
    const history = await (await factory.open(t))()
    await t.rejects(history.append({ topic: 't', retention: KEEP, frame: () => { throw new Error('boom') }, idempotencyWindowMs: WINDOW_MS }), { message: 'boom' })
    t.equal((await history.position('t')).offset, 0)
    t.equal((await publish(history, 't', 'ok')).offset, 1)
  })

  t.test(`${name}: close is idempotent`, async (t) => {
    const history = await (await factory.open(t))()
    await publish(history, 't', 1)
    await history.close()
    await history.close()
    t.ok(true)
  })
}

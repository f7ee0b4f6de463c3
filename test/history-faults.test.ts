/**
 * Issue 12's faults, black box, over real Redis with every hub in its own
 * process (they run dist/: `npm run build` first): a subscriber whose
 * socket or instance dies mid-stream, a transport outage while history is
 * up, a history Redis restarted without persistence, and fifty recoveries
 * while publishing runs flat out. "Nothing else arrived" is always a final
 * count after the stream's known last offset, never a sleep.
 */
import t from 'tap'
import { Redis } from 'ioredis'
import type { WsHubOptions } from '../lib/index.js'
import { until, type TestClient } from './helpers.js'
import { HubProcess } from './helpers/cluster.js'
import { deleteKeysUnder, needsRedisServer, PrivateRedis, redisUrl, uniquePrefix } from './helpers/redis-server.js'
import { firstOf, highestOf, judge, positionOf, Publisher, seenBy, Switchboard, type Position } from './helpers/history-stream.js'
import { assertStream, historyOptions, hubClient, lostSubscriber, subscriber, TOPIC, transportOutage } from './helpers/history-scenarios.js'

const url = redisUrl(t)

function cleanup (t: { teardown: (fn: () => unknown) => void }, redis: string, prefix: string): void {
  t.teardown(async () => {
    const admin = new Redis(redis)
    await deleteKeysUnder(admin, prefix)
    await admin.quit()
  })
}

async function hubs (t: Parameters<typeof HubProcess.start>[0], options: WsHubOptions, count: number): Promise<HubProcess[]> {
  return await Promise.all(Array.from({ length: count }, async () => HubProcess.start(t, options)))
}

/** Publishes `{ n }` once, retried until an instance answers with a position (history may be coming back). */
async function publishOnce (publisher: Publisher, n: number): Promise<Position> {
  await until(async () => {
    await publisher.publish(n)
    return publisher.positions.has(n)
  }, 30_000, `publish ${n} to be answered with a position`)
  return publisher.positions.get(n) as Position
}

if (url !== null) {
  const shared = (prefix: string): WsHubOptions => historyOptions({ type: 'redis', url, channelPrefix: prefix }, url, prefix)

  t.test('a subscriber terminated mid-stream (no close frame) comes back on another instance with every publication once, in order', async (t) => {
    const prefix = uniquePrefix('history-terminate')
    cleanup(t, url, prefix)
    await lostSubscriber(t, await hubs(t, shared(prefix), 3), 'terminate')
  })

  t.test('a subscriber whose instance is SIGKILLed mid-stream comes back on another instance with every publication once, in order', async (t) => {
    const prefix = uniquePrefix('history-kill')
    cleanup(t, url, prefix)
    await lostSubscriber(t, await hubs(t, shared(prefix), 3), 'kill')
  })

  t.test('Redis pub/sub down for 5 s while history is up: subscribers on other instances fill the gap from history', { skip: needsRedisServer() }, async (t) => {
    const prefix = uniquePrefix('history-transport-down')
    cleanup(t, url, prefix)
    const transport = await PrivateRedis.start(t)
    const instances = await hubs(t, historyOptions({ type: 'redis', url: transport.url, channelPrefix: prefix }, url, prefix), 3)
    // Killed and started again on the same port: the envelopes of the outage are gone, not delayed.
    await transportOutage(t, instances, async () => transport.stop(), async () => transport.start())
  })

  t.test('history Redis restarted without persistence: a new epoch, recovered: false / reset, never stale data', { skip: needsRedisServer() }, async (t) => {
    const prefix = uniquePrefix('history-restart')
    cleanup(t, url, prefix)
    const history = await PrivateRedis.start(t)
    const [a, b] = await hubs(t, historyOptions({ type: 'redis', url, channelPrefix: prefix }, history.url, prefix), 2) as [HubProcess, HubProcess]
    const staying = await subscriber(t, a.wsUrl)
    const board = new Switchboard(a.wsUrl)
    const app = await hubClient(t, board)
    const publisher = new Publisher(b.url, TOPIC)
    for (let n = 0; n < 20; n++) await publishOnce(publisher, n)
    const old = publisher.last
    await until(() => highestOf(seenBy(staying, TOPIC)) >= 20 && highestOf(app.seen) >= 20, 15_000, 'the first 20')

    // The HubClient is away during the restart; it comes back only when pointed at b.
    board.url = 'ws://127.0.0.1:9/ws'
    board.terminate()
    const framesBefore = staying.frames.length
    await history.stop()
    await history.start()
    for (let n = 20; n < 45; n++) await publishOnce(publisher, n)
    const fresh = publisher.last
    t.not(fresh.epoch, old.epoch, 'the restart began a new epoch')
    t.same([...publisher.positions].filter(([n]) => n >= 20).map(([, p]) => p.offset), Array.from({ length: 25 }, (_, i) => i + 1), 'whose offsets start again at 1')

    // A subscriber that stayed connected: told of the reset, then the new
    // epoch's publications; nothing of the old epoch after the restart.
    await until(() => seenBy(staying, TOPIC).some((s) => s.epoch === fresh.epoch && s.offset === 25), 15_000, 'the new epoch on the connected subscriber')
    const after = staying.frames.slice(framesBefore)
    const resetAt = after.findIndex((f) => f.topic === TOPIC && (f.type === 'reset' || f.recovered === false))
    const firstNew = after.findIndex((f) => f.type === 'publish' && positionOf(f)?.epoch === fresh.epoch)
    t.ok(resetAt !== -1 && resetAt < firstNew, `the connected subscriber was told to reset before the new epoch's first publication (reset at ${resetAt}, first at ${firstNew})`)
    t.match(after[resetAt], { epoch: fresh.epoch }, 'with the new epoch')
    // The reset's offset is where the client stands once it reloaded its state: the publications after it follow.
    const resetOffset = positionOf(after[resetAt])?.offset ?? NaN
    t.comment(`reset frame: ${JSON.stringify(after[resetAt])}`)
    assertStream(t, 'connected subscriber, new epoch after the reset', seenBy(staying, TOPIC).filter((s) => s.epoch === fresh.epoch), publisher, resetOffset + 1, 25)

    // A raw client recovering from the old epoch: recovered: false, the
    // current position, nothing from history. Its old offset (20) is below
    // the new current one (25): only the epoch tells them apart.
    const late = await subscriber(t, b.wsUrl, old)
    t.match(firstOf(late, 'subscribed'), { topic: TOPIC, recovered: false, offset: 25, epoch: fresh.epoch }, 'since the old epoch: recovered: false with the current position')
    t.ok(await late.nothingBefore('publish'), 'and no publication from history')

    // The HubClient comes back: a reset with the new epoch, then live ones, each once.
    board.url = b.wsUrl
    await until(() => app.resets.length > 0, 15_000, 'the HubClient\'s reset')
    t.match(app.resets, [{ topic: TOPIC, offset: 25, epoch: fresh.epoch }], 'the HubClient emitted reset with the new epoch')
    t.same(app.recovered, [], 'and not recovered')
    for (let n = 45; n < 50; n++) await publishOnce(publisher, n)
    await until(() => highestOf(app.seen.filter((s) => s.epoch === fresh.epoch)) >= 30, 15_000, 'the HubClient to get the new epoch\'s live publications')
    t.same(app.seen.filter((s) => s.epoch === old.epoch).map((s) => s.offset), Array.from({ length: 20 }, (_, i) => i + 1), 'of the old epoch, the HubClient had exactly 1..20 (nothing stale replayed)')
    assertStream(t, 'HubClient, new epoch', app.seen.filter((s) => s.epoch === fresh.epoch), publisher, 26, 30)
  })

  t.test('the seam: 50 subscribers recover while publishing runs flat out; none sees a gap or a duplicate', async (t) => {
    const prefix = uniquePrefix('history-seam')
    cleanup(t, url, prefix)
    const [a, b, c] = await hubs(t, shared(prefix), 3) as [HubProcess, HubProcess, HubProcess]
    const publisher = new Publisher(a.url, TOPIC)
    t.teardown(() => publisher.stop())
    publisher.flatOut(8)

    interface Run { first: TestClient, firstOffset: number, second?: TestClient }
    // Each subscribes on b or c, takes some of the stream, drops its socket
    // and at once recovers on the other instance; staggered so recoveries
    // fall all along the stream.
    const runs = await Promise.all(Array.from({ length: 50 }, async (_, i): Promise<Run> => {
      const [here, there] = i % 2 === 0 ? [b, c] : [c, b]
      const first = await subscriber(t, here.wsUrl)
      const run: Run = { first, firstOffset: positionOf(firstOf(first, 'subscribed'))?.offset ?? NaN }
      await until(() => seenBy(first, TOPIC).length >= 20 + i * 4, 30_000, `subscriber ${i} to take some of the stream`)
      first.socket.terminate()
      const last = seenBy(first, TOPIC).at(-1)
      if (last === undefined) throw new Error('nothing seen')
      run.second = await subscriber(t, there.wsUrl, last)
      return run
    }))
    const recovered = runs.filter((r) => r.second !== undefined && firstOf(r.second, 'subscribed')?.recovered === true).length
    t.equal(recovered, 50, 'all 50 recovered')
    // Some more of the stream after the last recovery, so every seam has live publications behind it.
    const sentAtEnd = publisher.sent
    await until(() => publisher.sent >= sentAtEnd + 500, 30_000, 'the stream after the recoveries')
    await publisher.stop()
    const last = publisher.last.offset
    t.comment(`${publisher.sent} published flat out (8 callers), last offset ${last}`)
    t.same(publisher.failures, [], 'every publish answered with its position')

    let perfectRuns = 0
    let plainSeams = 0
    for (const [i, run] of runs.entries()) {
      const second = run.second as TestClient
      await until(() => highestOf(seenBy(second, TOPIC)) >= last, 30_000, `subscriber ${i} to reach offset ${last}`).catch(() => {})
      const seen = [...seenBy(run.first, TOPIC), ...seenBy(second, TOPIC)]
      // A plain subscribe's offset is where the client stands: the next publication it gets is that offset + 1.
      if (seen[0]?.offset === run.firstOffset + 1) plainSeams++
      const { verdict, problems } = judge(seen.filter((s) => s.offset > run.firstOffset), publisher, run.firstOffset + 1, last)
      if (verdict.duplicates + verdict.missing + verdict.outOfOrder + verdict.wrongPayload === 0 && verdict.epochs === 1) perfectRuns++
      else t.comment(`subscriber ${i}: ${JSON.stringify(verdict)} ${problems.join('; ')}`)
    }
    t.equal(perfectRuns, 50, 'every subscriber saw its offsets exactly once, in order, across its recovery')
    t.equal(plainSeams, 50, 'every plain subscribe\'s first publication was its answered offset + 1')
  })
}

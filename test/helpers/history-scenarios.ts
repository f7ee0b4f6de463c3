/**
 * The fault scenarios of issue 12 that run over both transports: a
 * subscriber whose connection or instance dies in the middle of a stream,
 * and a transport that is down for five seconds while history is up.
 * The hubs run in their own processes (dist/: `npm run build` first).
 */
import { HubClient } from '../../lib/client/index.js'
import type { WsHubOptions } from '../../lib/index.js'
import { connect, until, type TestClient } from '../helpers.js'
import type { HubProcess } from './cluster.js'
import { firstOf, highestOf, judge, perfect, positionOf, Publisher, record, seenBy, sleep, Switchboard, type Seen } from './history-stream.js'

export const TOPIC = 'feed:prices'

/**
 * History keeps far more than a run publishes, so only a fault can make a
 * recovery fail. maxRecovery is raised above the default 300: a subscriber
 * away for one second of a 500 msg/s stream misses about 500, which the
 * scenario requires it to get back.
 */
export function historyOptions (broker: NonNullable<WsHubOptions['broker']>, historyUrl: string, keyPrefix: string): WsHubOptions {
  return {
    broker,
    history: { type: 'redis', url: historyUrl, keyPrefix },
    maxRecovery: 10_000,
    topics: { namespaces: { feed: { history: { size: 50_000, ttlMs: 600_000 } } } }
  }
}

type Message = [] | [message: string]

/** The few methods of a tap test these scenarios use; rest-parameter messages, as tap's own signatures take them. */
export interface Tap {
  teardown: (fn: () => unknown) => void
  ok: (value: unknown, ...message: Message) => unknown
  equal: (found: unknown, wanted: unknown, ...message: Message) => unknown
  not: (found: unknown, notWanted: unknown, ...message: Message) => unknown
  same: (found: unknown, wanted: unknown, ...message: Message) => unknown
  match: (found: unknown, pattern: unknown, ...message: Message) => unknown
  comment: (...message: unknown[]) => unknown
}

/** A raw client subscribed to TOPIC (optionally with `since`), once its `subscribed` frame is in. */
export async function subscriber (t: Tap, wsUrl: string, since?: { offset: number, epoch: string }): Promise<TestClient> {
  const client = await connect(wsUrl)
  t.teardown(() => client.socket.terminate())
  client.send(since === undefined ? { type: 'subscribe', topic: TOPIC, id: 'sub' } : { type: 'subscribe', topic: TOPIC, since, id: 'sub' })
  await until(() => firstOf(client, 'subscribed') !== undefined || firstOf(client, 'error') !== undefined, 15_000, 'subscribed')
  const refused = firstOf(client, 'error')
  if (refused !== undefined) throw new Error(`subscribe refused: ${JSON.stringify(refused)}`)
  return client
}

/** A HubClient that reconnects exactly one second after a loss, to wherever the board points. */
export async function hubClient (t: Tap, board: Switchboard): Promise<{ client: HubClient, seen: Seen[], recovered: unknown[], resets: unknown[] }> {
  const client = new HubClient(board.url, {
    WebSocket: board.WebSocket,
    reconnect: { initialDelayMs: 1000, maxDelayMs: 1000, factor: 1, jitter: 0 },
    noReconnectCodes: [],
    pingIntervalMs: 0
  })
  t.teardown(() => client.close())
  const recorded = record(client, TOPIC)
  await client.connect()
  await client.subscribe(TOPIC)
  return { client, ...recorded }
}

/** Asserts that `seen` is offsets first..last of the publisher's stream, each once, in order. */
export function assertStream (t: Tap, who: string, seen: Seen[], publisher: Publisher, first: number, last: number): void {
  const { verdict, problems } = judge(seen, publisher, first, last)
  t.same(verdict, perfect(first, last), `${who}: offsets ${first}..${last} exactly once, in order, with their payloads${problems.length > 0 ? `; ${problems.join('; ')}` : ''}`)
}

/**
 * A subscriber on `a` (a raw client doing `since` itself, and a HubClient)
 * loses its connection in the middle of a 500 msg/s stream published from
 * `b`, by `lose` (a terminated socket, or `a` SIGKILLed), and comes back
 * one second later on `c`: every publication exactly once, in order.
 */
export async function lostSubscriber (t: Tap, [a, b, c]: HubProcess[], lose: 'terminate' | 'kill'): Promise<void> {
  if (a === undefined || b === undefined || c === undefined) throw new Error('three hubs')
  const raw = await subscriber(t, a.wsUrl)
  const answered = positionOf(firstOf(raw, 'subscribed'))
  t.match(answered, { offset: 0 }, 'a subscribe to a fresh history topic answers offset 0')
  const board = new Switchboard(a.wsUrl)
  const app = await hubClient(t, board)

  const publisher = new Publisher(b.url, TOPIC)
  t.teardown(() => publisher.stop())
  const startedAt = Date.now()
  publisher.pace(500)
  await until(() => seenBy(raw, TOPIC).length >= 500, 15_000, 'a second of the stream on a')

  board.url = c.wsUrl
  if (lose === 'kill') {
    await a.kill()
  } else {
    raw.socket.terminate()
    board.terminate()
  }
  const before = seenBy(raw, TOPIC)
  const lastBefore = before.at(-1)
  if (lastBefore === undefined) throw new Error('nothing seen')
  // The scenario's pause: the client is away for one second (the HubClient's backoff is the same second).
  await sleep(1000)
  const back = await subscriber(t, c.wsUrl, { offset: lastBefore.offset, epoch: lastBefore.epoch })
  t.match(firstOf(back, 'subscribed'), { topic: TOPIC, recovered: true, epoch: lastBefore.epoch }, 'the raw client recovered on c')
  // "since: { offset: current } misses nothing": the answer to the first subscribe, before any publication, recovers the whole stream.
  const fromZero = await subscriber(t, c.wsUrl, answered ?? undefined)
  t.match(firstOf(fromZero, 'subscribed'), { topic: TOPIC, recovered: true, epoch: lastBefore.epoch }, 'a raw client with since: the first answer (offset 0) recovered on c')

  await until(() => publisher.sent >= 2000, 20_000, 'the rest of the stream')
  await publisher.stop()
  t.same(publisher.failures, [], 'every publish answered with its position')
  const last = publisher.last.offset
  t.comment(`${publisher.sent} published in ${Date.now() - startedAt} ms, last offset ${last}; the raw client had ${before.length} before the loss`)
  await until(() => highestOf(seenBy(back, TOPIC)) >= last, 30_000, `the raw client to reach offset ${last}`)
  await until(() => highestOf(app.seen) >= last, 30_000, `the HubClient to reach offset ${last}`)
  await until(() => highestOf(seenBy(fromZero, TOPIC)) >= last, 30_000, `the raw client since offset 0 to reach offset ${last}`)

  assertStream(t, 'raw client (since by hand)', [...before, ...seenBy(back, TOPIC)], publisher, 1, last)
  assertStream(t, 'HubClient', app.seen, publisher, 1, last)
  assertStream(t, 'raw client since offset 0', seenBy(fromZero, TOPIC), publisher, 1, last)
  t.equal(app.recovered.length, 1, 'the HubClient emitted recovered once')
  t.same(app.resets, [], 'and no reset')
}

/** Publications a second during the outage scenario. */
const RATE = 200

/**
 * The transport between instances is down for five seconds (`down`, then
 * `up`) while history stays up; `b` publishes at 200 msg/s throughout
 * (a gap of 1000 to 1500 offsets, well within maxRecovery and the kept size).
 * Subscribers on `a` and `c` (whose sockets stay open) miss the envelopes
 * of the outage, notice the gap at the first one after it, and fill it from
 * history: nothing lost or duplicated.
 */
export async function transportOutage (t: Tap, [a, b, c]: HubProcess[], down: () => Promise<void>, up: () => Promise<void>): Promise<void> {
  if (a === undefined || b === undefined || c === undefined) throw new Error('three hubs')
  const onA = await subscriber(t, a.wsUrl)
  const onC = await subscriber(t, c.wsUrl)
  const app = await hubClient(t, new Switchboard(a.wsUrl))
  const publisher = new Publisher(b.url, TOPIC)
  t.teardown(() => publisher.stop())
  publisher.pace(RATE)
  await until(() => seenBy(onA, TOPIC).length >= RATE && seenBy(onC, TOPIC).length >= RATE, 15_000, 'the stream on a and c')

  await down()
  const sentAtDown = publisher.sent
  await sleep(5000)
  const sentWhileDown = publisher.sent - sentAtDown
  const storedWhileDown = [...publisher.positions.keys()].filter((n) => n >= sentAtDown).length
  await up()
  t.comment(`${sentWhileDown} publishes during the outage, ${storedWhileDown} of them answered with a position by then`)
  t.ok(storedWhileDown > 0, 'history took publishes while the transport was down')

  // Three more seconds of stream after the transport is back: the first
  // envelope that crosses shows the receivers their gap.
  const sentAtUp = publisher.sent
  await until(() => publisher.sent >= sentAtUp + 3 * RATE, 20_000, 'the stream after the outage')
  await publisher.stop()
  const last = publisher.last.offset
  t.comment(`${publisher.sent} published, last offset ${last}, ${publisher.failures.length} publishes answered without a position`)
  for (const [name, seen] of [['a', () => seenBy(onA, TOPIC)], ['c', () => seenBy(onC, TOPIC)], ['HubClient on a', () => app.seen]] as const) {
    await until(() => highestOf(seen()) >= last, 30_000, `the subscriber on ${name} to reach offset ${last}`).catch(() => {})
    assertStream(t, `subscriber on ${name}`, seen(), publisher, 1, last)
  }
  for (const client of [onA, onC]) t.equal(firstOf(client, 'reset'), undefined, 'no reset: the gap was filled')
  t.same(app.resets, [], 'the HubClient had no reset')
}

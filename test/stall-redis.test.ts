/**
 * Regression (issue 10, items 1 and 2): a hung Redis is detected, and acks
 * do not wait for the transport.
 *
 * A frozen Redis (SIGSTOP) keeps its sockets open, so before the connection
 * watchdog every instance reported `ok`/`up` while each handshake waited 5 s
 * for a 503 and each cross-instance publish failed; and a client's acks for
 * broadcast and publish waited for the publish, that is for ioredis' command
 * timeout. Two instances (one in its own process) share a private
 * redis-server as broker and registry; it is frozen, then resumed.
 */
import t from 'tap'
import { build, connect, handshakeStatus, until, type TestClient } from './helpers.js'
import { needsRedisServer, PrivateRedis, uniquePrefix, type LogLine } from './helpers/redis-server.js'
import { HubProcess } from './helpers/cluster.js'
import { RECONNECT_MAX_MS, STALL_DETECTION_MS } from '../lib/cluster/redis/connect.js'
import type { WsHubOptions } from '../lib/index.js'

// Slack over the documented bounds for a loaded 2-core machine: timers run
// late and two hubs, a redis-server and tap share the cores. The point of the
// bounds is "seconds, not never", not precision.
const SLACK_MS = 4_000

function options (url: string, prefix: string): WsHubOptions {
  return {
    broker: { type: 'redis', url, channelPrefix: prefix },
    // A lease far longer than the freeze keeps lease expiry (another item of
    // issue 10) out of this test.
    registry: { type: 'redis', url, keyPrefix: prefix, leaseMs: 60_000 }
  }
}

interface Health { status: string, broker: string, registry: string }

async function health (base: string): Promise<Health> {
  return await (await fetch(`${base}/api/health`)).json() as Health
}

async function gauge (base: string, name: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text()
  const line = text.split('\n').find((l) => l.startsWith(`${name} `))
  if (line === undefined) throw new Error(`no ${name} in /metrics`)
  return Number(line.split(' ')[1])
}

/** Sends a frame with an id and resolves with how long its ack took, in ms. */
async function acked (client: TestClient, frame: Record<string, unknown> & { id: string }): Promise<number> {
  const started = Date.now()
  client.send(frame)
  const ack = await client.next('ack', 10_000)
  if (ack.id !== frame.id) throw new Error(`ack for ${String(ack.id)}, expected ${frame.id}`)
  return Date.now() - started
}

async function received (client: TestClient, type: string, message: unknown, timeoutMs = 10_000): Promise<void> {
  await until(() => client.frames.some((f) => f.type === type && f.message === message), timeoutMs, `${type} ${JSON.stringify(message)}`)
}

t.test('stall: a hung Redis (SIGSTOP) is reported as an outage within the detection time, acks never wait for it, and service resumes on SIGCONT', { skip: needsRedisServer() }, async (t) => {
  const redis = await PrivateRedis.start(t)
  const prefix = uniquePrefix('stall')
  const lines: LogLine[] = []
  const a = await build(t, options(redis.url, prefix), {
    logger: { level: 'info', stream: { write: (line: string) => { lines.push(JSON.parse(line) as LogLine) } } }
  })
  // Its own process: its timers and sockets are nothing like the test's.
  // Its expected warnings would only clutter the test output.
  process.env.HUB_LOG_LEVEL ??= 'silent'
  const b = await HubProcess.start(t, options(redis.url, prefix))

  const sender = await connect(a.wsUrl)
  const local = await connect(a.wsUrl)
  const far = await connect(b.wsUrl)
  for (const [client, id] of [[sender, 's'], [local, 'l'], [far, 'f']] as const) {
    await acked(client, { type: 'subscribe', topic: 'room', id })
  }
  await acked(sender, { type: 'broadcast', message: 'before', id: 'before' })
  await received(far, 'message', 'before')
  t.same(await health(a.url), { status: 'ok', instanceId: a.app.wsHub.instanceId, broker: 'up', registry: 'up', connections: 2, sources: [] })

  redis.pause()
  const frozenAt = Date.now()

  // Before the stall is detected the publisher still looks ready, so this
  // publish is in flight on a socket nobody serves. The ack must not wait
  // for it: it comes while the publish has neither succeeded nor failed.
  const failuresBefore = a.app.wsHub.stats().brokerPublishFailures
  const firstAck = await acked(sender, { type: 'broadcast', message: 'stalled', id: 'stalled' })
  const atAck = a.app.wsHub.stats()
  t.equal(atAck.brokerPublishFailures, failuresBefore, 'acked before the transport gave its verdict on the publish')
  t.ok(firstAck < STALL_DETECTION_MS, `the ack came in ${firstAck} ms, not after the stall was detected (${STALL_DETECTION_MS} ms)`)
  await received(local, 'message', 'stalled')
  const publishAck = await acked(sender, { type: 'publish', topic: 'room', message: 'stalled topic', id: 'stalled-publish' })
  t.ok(publishAck < STALL_DETECTION_MS, `publish acked in ${publishAck} ms`)
  await received(local, 'publish', 'stalled topic')

  // Detection: health, on both instances, within the documented bound.
  await until(async () => {
    const [ha, hb] = await Promise.all([health(a.url), health(b.url)])
    return [ha, hb].every((h) => h.status === 'degraded' && h.broker === 'down' && h.registry === 'down')
  }, STALL_DETECTION_MS + SLACK_MS, 'both instances to report broker and registry down')
  const detectedIn = Date.now() - frozenAt
  t.ok(detectedIn <= STALL_DETECTION_MS + SLACK_MS, `detected in ${detectedIn} ms (bound ${STALL_DETECTION_MS} ms plus slack)`)
  // Counted once the transport gave up on it, whenever that is: what
  // matters is that the ack did not wait for it.
  await until(() => a.app.wsHub.stats().brokerPublishFailures > failuresBefore, 10_000, 'the publish in flight to be counted as failed')
  t.pass('the publish in flight failed, and was counted, only after its ack')
  for (const base of [a.url, b.url]) {
    t.equal(await gauge(base, 'ws_hub_broker_up'), 0, `${base}: ws_hub_broker_up 0`)
    t.equal(await gauge(base, 'ws_hub_registry_up'), 0, `${base}: ws_hub_registry_up 0`)
  }
  t.same((await (await fetch(`${a.url}/api/health/live`)).json()), { status: 'ok' }, 'liveness stays OK')

  // During the outage: local service goes on, every answer is prompt.
  for (let n = 0; n < 20; n++) {
    const took = await acked(sender, { type: 'broadcast', message: `during ${n}`, id: `during-${n}` })
    t.ok(took < STALL_DETECTION_MS, `broadcast ${n} acked in ${took} ms`)
  }
  await received(local, 'message', 'during 19')
  t.ok(await acked(sender, { type: 'publish', topic: 'room', message: 'during topic', id: 'during-publish' }) < STALL_DETECTION_MS, 'publish acked')
  await received(local, 'publish', 'during topic')
  t.ok(await acked(sender, { type: 'direct', target: local.clientId, message: 'psst', id: 'direct-local' }) < STALL_DETECTION_MS, 'a direct to a local client is acked')
  await received(local, 'direct', 'psst')
  t.ok(await acked(sender, { type: 'subscribe', topic: 'later', id: 'subscribe-during' }) < STALL_DETECTION_MS + SLACK_MS, 'subscribe is acked, not held until Redis returns')

  // Nobody can say where a remote client is: an honest error, not a hang
  // and not "no such client".
  const askedAt = Date.now()
  sender.send({ type: 'direct', target: far.clientId, message: 'x', id: 'direct-far' })
  t.match(await sender.next('error', 10_000), { code: 'unavailable', id: 'direct-far' })
  t.ok(Date.now() - askedAt < STALL_DETECTION_MS + SLACK_MS, 'answered within the detection bound')

  const refusedAt = Date.now()
  const refused = await handshakeStatus(a.wsUrl)
  t.equal(refused.status, 503)
  t.match(refused.body, /registry_unavailable/)
  t.ok(Date.now() - refusedAt < STALL_DETECTION_MS + SLACK_MS, `handshake refused in ${Date.now() - refusedAt} ms, not after a 5 s command timeout`)

  // Hold the freeze as long as the reproduction did, to show the
  // outage is logged once, not once per operation or reconnect attempt.
  const heldUntil = frozenAt + 10_000
  if (Date.now() < heldUntil) await new Promise((resolve) => setTimeout(resolve, heldUntil - Date.now()))
  const warned = (text: string): LogLine[] => lines.filter((l) => l.level === 40 && l.msg.includes(text))
  t.equal(warned('Redis transport down').length, 1, 'the transport outage is logged once')
  t.match(warned('Redis transport down')[0]?.err?.message, /PING/, 'with the watchdog\'s finding as the cause')
  t.equal(warned('Redis cluster state unreachable').length, 1, 'the registry outage is logged once')
  t.ok(lines.filter((l) => l.level === 50 && l.msg.includes('cross-instance delivery failed')).length <= 1, 'publish failures are logged at most once per 10 s')

  const linesAtResume = lines.length
  redis.resume()
  const resumedAt = Date.now()
  await until(async () => {
    const [ha, hb] = await Promise.all([health(a.url), health(b.url)])
    return ha.status === 'ok' && hb.status === 'ok'
  }, RECONNECT_MAX_MS + STALL_DETECTION_MS + SLACK_MS, 'both instances to report ok again')
  t.ok(Date.now() - resumedAt <= RECONNECT_MAX_MS + STALL_DETECTION_MS + SLACK_MS, `recovered in ${Date.now() - resumedAt} ms`)
  t.same(await health(a.url), { status: 'ok', instanceId: a.app.wsHub.instanceId, broker: 'up', registry: 'up', connections: 2, sources: [] })
  t.equal(await gauge(a.url, 'ws_hub_broker_up'), 1)
  t.equal(await gauge(a.url, 'ws_hub_registry_up'), 1)

  // Cross-instance delivery resumes by itself, topics included (their
  // interest was kept and subscribed again).
  await acked(sender, { type: 'broadcast', message: 'after', id: 'after' })
  await received(far, 'message', 'after')
  await acked(far, { type: 'publish', topic: 'room', message: 'after topic', id: 'after-publish' })
  await received(sender, 'publish', 'after topic')
  await received(local, 'publish', 'after topic')
  await acked(sender, { type: 'direct', target: far.clientId, message: 'found again', id: 'direct-after' })
  await received(far, 'direct', 'found again')
  t.equal(lines.slice(linesAtResume).filter((l) => l.level === 30 && l.msg.includes('Redis transport up')).length, 1, 'and is logged once')
})

import t from 'tap'
import diagnosticsChannel from 'node:diagnostics_channel'
import { Registry } from 'prom-client'
import { build, connect, handshakeStatus, until } from './helpers.js'
import { diagnosticsChannels, type ConnectEvent, type DisconnectEvent, type MessageEvent } from '../lib/index.js'
import { internalsOf } from '../lib/internals.js'

const metricValue = (text: string, line: string): number | undefined => {
  const found = text.split('\n').find((l) => l.startsWith(line + ' '))
  return found === undefined ? undefined : Number(found.slice(line.length + 1))
}

t.test('GET /metrics exposes bounded Prometheus metrics', async (t) => {
  const { url, wsUrl } = await build(t, { maxConnectionsPerIp: 2, service: { onMessage: () => {} } })
  const a = await connect(wsUrl)
  const b = await connect(wsUrl)
  t.equal((await handshakeStatus(wsUrl)).status, 429)
  a.send({ type: 'broadcast', message: 'x' })
  a.send({ type: 'my-custom-type-1' })
  a.send({ type: 'my-custom-type-2' })
  a.send('not json')
  await a.next('error')
  await b.next('message')
  b.socket.close(4999, 'odd code')
  await until(async () => metricValue(await (await fetch(`${url}/metrics`)).text(), 'ws_hub_connections') === 1)

  const res = await fetch(`${url}/metrics`)
  t.equal(res.status, 200)
  t.match(res.headers.get('content-type'), /text\/plain/)
  const text = await res.text()
  t.equal(metricValue(text, 'ws_hub_connections'), 1)
  t.equal(metricValue(text, 'ws_hub_connections_opened_total'), 2)
  t.equal(metricValue(text, 'ws_hub_connections_closed_total{code="other"}'), 1, 'an arbitrary client close code is folded')
  t.equal(metricValue(text, 'ws_hub_handshakes_rejected_total{reason="ip_limit"}'), 1)
  t.equal(metricValue(text, 'ws_hub_messages_in_total{type="broadcast"}'), 1)
  t.equal(metricValue(text, 'ws_hub_messages_in_total{type="custom"}'), 2, 'custom types folded into one label')
  t.equal(metricValue(text, 'ws_hub_messages_in_total{type="invalid"}'), 1)
  t.ok((metricValue(text, 'ws_hub_messages_out_total') ?? 0) >= 4)
  t.ok((metricValue(text, 'ws_hub_bytes_out_total') ?? 0) > 100)
  t.equal(metricValue(text, 'ws_hub_broker_up'), 1)
  t.match(text, /# TYPE ws_hub_broker_publish_seconds histogram/)
  t.match(text, /ws_hub_slow_consumer_closes_total 0/)
  t.match(text, /ws_hub_messages_dropped_total\{reason="rate_limited"\} 0/)
  t.notMatch(text, /127\.0\.0\.1|clientId|[0-9a-f]{8}-[0-9a-f]{4}-/, 'no ip or client id labels')
})

t.test('metrics: false removes the route; path, prefix and a user registry are honoured', async (t) => {
  const off = await build(t, { metrics: false })
  t.equal((await fetch(`${off.url}/metrics`)).status, 404)
  const registry = new Registry()
  const mine = await build(t, { metrics: { path: '/prom', prefix: 'chat_', registry } })
  await connect(mine.wsUrl)
  const text = await (await fetch(`${mine.url}/prom`)).text()
  t.equal(metricValue(text, 'chat_connections'), 1)
  t.equal(metricValue(await registry.metrics(), 'chat_connections'), 1, 'registered in the user\'s registry')
  t.equal((await fetch(`${mine.url}/metrics`)).status, 404)
})

t.test('rest.auth guards the metrics route', async (t) => {
  const { url } = await build(t, { rest: { auth: (r) => r.headers.authorization === 'Bearer scrape' } })
  t.equal((await fetch(`${url}/metrics`)).status, 401)
  t.equal((await fetch(`${url}/metrics`, { headers: { authorization: 'Bearer scrape' } })).status, 200)
})

t.test('diagnostics_channel events for connect, message and disconnect', async (t) => {
  const events: Array<[string, unknown]> = []
  const listeners = Object.entries(diagnosticsChannels).map(([name, channel]) => {
    const listener = (message: unknown): void => { events.push([name, message]) }
    diagnosticsChannel.subscribe(channel, listener)
    return () => diagnosticsChannel.unsubscribe(channel, listener)
  })
  t.teardown(() => { for (const off of listeners) off() })
  const { wsUrl, app } = await build(t)
  const a = await connect(wsUrl)
  a.send({ type: 'ping' })
  await a.next('pong')
  a.close()
  await until(() => events.some(([name]) => name === 'disconnect'))
  const connect_ = events.find(([name]) => name === 'connect')?.[1] as ConnectEvent
  t.same(connect_, { clientId: a.clientId, ip: '127.0.0.1', userId: null, instanceId: app.wsHub.instanceId })
  const message = events.find(([name]) => name === 'message')?.[1] as MessageEvent
  t.same(message, { clientId: a.clientId, userId: null, type: 'ping', bytes: 15 })
  const disconnect = events.find(([name]) => name === 'disconnect')?.[1] as DisconnectEvent
  t.match(disconnect, { clientId: a.clientId, code: 1005, reason: '', durationMs: Number })
})

t.test('structured logs: connection lines, refusals, slow consumers; no bodies at info', async (t) => {
  const lines: Array<Record<string, unknown>> = []
  const stream = { write: (line: string) => { lines.push(JSON.parse(line) as Record<string, unknown>) } }
  const { wsUrl, app } = await build(t, { maxConnectionsPerIp: 1, maxBufferedBytes: 1 }, { logger: { level: 'info', stream } })
  const a = await connect(wsUrl)
  t.equal((await handshakeStatus(wsUrl)).status, 429)
  a.send({ type: 'broadcast', message: 'TOP-SECRET-BODY' })
  await until(() => app.wsHub.stats().messagesIn === 1)
  a.socket.pause()
  // The kernel's socket buffers take the first megabytes; keep going until
  // the paused client's unsent bytes show in user space.
  const chunk = 'x'.repeat(32 * 1024)
  for (let n = 0; n < 3000 && internalsOf(app.wsHub).connections.count > 0; n++) {
    await app.wsHub.broadcast(chunk)
    if (n % 20 === 0) await new Promise((resolve) => setImmediate(resolve))
  }
  t.equal(internalsOf(app.wsHub).connections.count, 0, 'cut off as a slow consumer')
  a.socket.resume()
  await a.closed
  await until(() => lines.some((l) => l.msg === 'ws-hub: connection closed'))
  t.match(lines.find((l) => l.msg === 'ws-hub: connection opened'), { clientId: a.clientId, ip: '127.0.0.1', userId: null })
  t.match(lines.find((l) => l.msg === 'ws-hub: handshake rejected'), { ip: '127.0.0.1', reason: 'ip_limit' })
  t.match(lines.find((l) => l.msg === 'ws-hub: slow consumer closed'), { clientId: a.clientId })
  t.match(lines.find((l) => l.msg === 'ws-hub: connection closed'), { clientId: a.clientId, code: 4008, reason: 'slow consumer', durationMs: Number })
  t.notOk(lines.some((l) => JSON.stringify(l).includes('TOP-SECRET-BODY')), 'message bodies are not logged')
})

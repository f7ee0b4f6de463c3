/**
 * The lateness bound, without a broker: envelopes carry their send time,
 * receivers drop what is older than maxEnvelopeAgeMs, and a publish whose
 * fate is unknown is reported failed only once receivers would drop it.
 * Ages are set with explicit timestamps, so no test depends on timing
 * except where a wait is what is being tested (and then only its lower bound).
 */
import t from 'tap'
import type { WebSocket } from 'ws'
import type { Message, Producer, ProducerRecord, RecordMetadata } from 'kafkajs'
import { Connection } from '../lib/connections/connection.js'
import { ConnectionManager } from '../lib/connections/connection-manager.js'
import { MessageDispatcher } from '../lib/dispatch/message-dispatcher.js'
import { MemoryDirectory } from '../lib/cluster/memory/memory-directory.js'
import { decodeEnvelope, encodeEnvelope, envelopeAge, untilStale, type Envelope } from '../lib/cluster/envelope.js'
import { KafkaPublisher, type PublishCounters } from '../lib/cluster/kafka/kafka-publisher.js'
import { EnvelopeError } from '../lib/errors.js'
import { FakeSocket, recordingLogger } from './fakes/fake-socket.js'

const SENT = 1_700_000_000_000
const examples: Envelope[] = [
  { type: 'deliver', origin: 'a', target: { kind: 'topic', topic: 'x\ny' }, frame: '{"n":1}\n2', sentAt: SENT },
  { type: 'close', origin: 'a', target: { kind: 'user', userId: 'u' }, code: 4001, reason: 'r', sentAt: SENT },
  { type: 'query', origin: 'a', requestId: 'q', clientIds: ['c'], sentAt: SENT },
  { type: 'reply', origin: 'a', requestId: 'q', connections: [], sentAt: SENT },
  { type: 'subscribe', origin: 'a', target: { kind: 'user', userId: 'u' }, topic: 'chat:1', sentAt: SENT },
  { type: 'unsubscribe', origin: 'a', target: { kind: 'client', id: 'c' }, topic: 'news', sentAt: SENT }
]

t.test('every envelope type carries its send time through the encoding', async (t) => {
  for (const envelope of examples) t.same(decodeEnvelope(encodeEnvelope(envelope)), envelope, envelope.type)
  const before = Date.now()
  const stamped = decodeEnvelope(encodeEnvelope({ type: 'query', origin: 'a', requestId: 'q', clientIds: [] }))
  t.ok(stamped.sentAt !== undefined && stamped.sentAt >= before && stamped.sentAt <= Date.now(), 'unstamped: stamped when encoded')
  t.equal(decodeEnvelope(encodeEnvelope(examples[0] as Envelope, SENT + 5)).sentAt, SENT + 5, 'an explicit send time wins')
})

t.test('decoding refuses an envelope without a valid send time', async (t) => {
  const bad = [
    '{"y":"deliver","o":"a","t":{"kind":"all"}}\n{}',
    '{"y":"deliver","o":"a","t":{"kind":"all"},"s":"1"}\n{}',
    '{"y":"deliver","o":"a","t":{"kind":"all"},"s":1.5}\n{}',
    '{"type":"query","origin":"a","requestId":"q","clientIds":[]}',
    '{"type":"close","origin":"a","target":{"kind":"client","id":"c"},"code":4000,"reason":"","sentAt":-1}',
    '{"type":"reply","origin":"a","requestId":"q","connections":[],"sentAt":null}',
    '{"type":"subscribe","origin":"a","target":{"kind":"user","userId":"u"},"topic":"t"}'
  ]
  for (const text of bad) t.throws(() => decodeEnvelope(text), EnvelopeError, text)
})

t.test('decoding refuses a subscription envelope for a fan-out target or without a topic', async (t) => {
  const bad = [
    '{"type":"subscribe","origin":"a","target":{"kind":"all"},"topic":"t","sentAt":1}',
    '{"type":"unsubscribe","origin":"a","target":{"kind":"topic","topic":"t"},"topic":"t","sentAt":1}',
    '{"type":"unsubscribe","origin":"a","target":{"kind":"client","id":"c"},"sentAt":1}'
  ]
  for (const text of bad) t.throws(() => decodeEnvelope(text), EnvelopeError, text)
})

t.test('age is measured against the receiver\'s clock; an unstamped envelope has none', async (t) => {
  const envelope = examples[0] as Envelope
  t.equal(envelopeAge(envelope, SENT + 3000), 3000)
  t.equal(envelopeAge(envelope, SENT - 20), -20, 'an origin clock ahead gives a negative age')
  t.equal(envelopeAge({ type: 'query', origin: 'a', requestId: 'q', clientIds: [] }, SENT), undefined)
})

t.test('untilStale waits past the bound, and not at all for an envelope already stale', async (t) => {
  const sentAt = Date.now()
  await untilStale(sentAt, 50)
  t.ok(Date.now() - sentAt > 50, 'stale by this clock once it resolves')
  const started = Date.now()
  await untilStale(started - 10_000, 50)
  t.ok(Date.now() - started < 50, 'no wait')
})

async function dispatcher (maxEnvelopeAgeMs?: number) {
  const directory = new MemoryDirectory()
  await directory.join('i1')
  const { log, lines } = recordingLogger()
  const connections = new ConnectionManager({ instanceId: 'i1', maxBufferedBytes: 1 << 20, log })
  const socket = new FakeSocket()
  connections.add(new Connection('a', '1.1.1.1', null, socket as unknown as WebSocket))
  const d = new MessageDispatcher({ instanceId: 'i1', connections, directory, transport: null, log, conflateMs: 100, queryTimeoutMs: 1000, maxEnvelopeAgeMs })
  return { d, socket, lines }
}

const deliver = (n: number, sentAt: number | undefined): Envelope =>
  ({ type: 'deliver', origin: 'i2', target: { kind: 'all' }, frame: `{"n":${n}}`, ...(sentAt === undefined ? {} : { sentAt }) })

t.test('receive drops an envelope older than maxEnvelopeAgeMs, counts it and logs once', async (t) => {
  const { d, socket, lines } = await dispatcher(1000)
  const now = Date.now()
  d.receive(deliver(1, now - 5000))
  d.receive(deliver(2, now - 60_000))
  d.receive(deliver(3, now))
  d.receive(deliver(4, now + 2000))
  d.receive(deliver(5, undefined))
  d.receive({ type: 'close', origin: 'i2', target: { kind: 'client', id: 'a' }, code: 4000, reason: 'late', sentAt: now - 5000 })
  t.same(socket.sent, ['{"n":3}', '{"n":4}', '{"n":5}'], 'fresh, ahead-of-clock and unstamped envelopes are handled; stale ones are not')
  t.equal(socket.closedWith, null, 'a stale close is dropped too')
  t.equal(d.counters.staleEnvelopesDropped, 3)
  t.equal(d.counters.remoteEnvelopesIn, 6, 'stale ones are counted as received as well')
  const warnings = lines.filter((l) => String(l.args[1]).includes('older than maxEnvelopeAgeMs'))
  t.equal(warnings.length, 1, 'logged once, not per envelope')
  t.equal(warnings[0]?.level, 'warn')
})

t.test('the default bound is 3 s', async (t) => {
  const { d, socket } = await dispatcher()
  const now = Date.now()
  d.receive(deliver(1, now - 2500))
  d.receive(deliver(2, now - 3500))
  t.same(socket.sent, ['{"n":1}'])
  t.equal(d.counters.staleEnvelopesDropped, 1)
})

/** A kafkajs producer whose requests the test settles by hand. */
class FakeProducer {
  readonly requests: Array<{ messages: Message[], resolve: () => void, reject: (err: Error) => void }> = []
  async send (record: ProducerRecord): Promise<RecordMetadata[]> {
    await new Promise<void>((resolve, reject) => this.requests.push({ messages: record.messages, resolve, reject }))
    return []
  }
}

function publisher (publishTimeoutMs: number, maxEnvelopeAgeMs: number) {
  const producer = new FakeProducer()
  const counters: PublishCounters = { published: 0, publishOverflows: 0, publishFailures: 0 }
  const { log } = recordingLogger()
  const p = new KafkaPublisher(producer as unknown as Producer, { topic: 't', acks: 1, publishTimeoutMs, maxPendingPublishes: 100, maxEnvelopeAgeMs }, counters, { sent: () => {}, failed: () => {} }, log)
  return { p, producer, counters }
}

const outcome = async (work: Promise<void>): Promise<{ ok: boolean, at: number, error?: string }> => {
  try {
    await work
    return { ok: true, at: Date.now() }
  } catch (err) {
    return { ok: false, at: Date.now(), error: (err as Error).message }
  }
}

t.test('kafka: a timed-out publish already in a request rejects only once stale', async (t) => {
  const { p, producer, counters } = publisher(20, 300)
  const sentAt = Date.now()
  const first = outcome(p.publish(deliver(1, sentAt), undefined))
  const queued = outcome(p.publish(deliver(2, sentAt), undefined))
  t.equal(producer.requests.length, 1, 'one request in flight; the second waits in the queue')
  const q = await queued
  t.notOk(q.ok, 'a queued publish that timed out was never sent: rejected at once')
  t.ok(q.at - sentAt < 300)
  const f = await first
  t.notOk(f.ok)
  t.ok(f.at - sentAt > 300, `the one in flight rejects after maxEnvelopeAgeMs (${f.at - sentAt} ms)`)
  t.match(f.error, /not acknowledged within 20 ms; reported once older than maxEnvelopeAgeMs \(300 ms\)/)
  t.equal(counters.publishFailures, 2)
})

t.test('kafka: an acknowledgement before the envelope is stale still resolves a timed-out publish', async (t) => {
  const { p, producer, counters } = publisher(20, 5000)
  const work = outcome(p.publish(deliver(1, Date.now()), undefined))
  await new Promise((resolve) => setTimeout(resolve, 60))
  producer.requests[0]?.resolve()
  t.ok((await work).ok)
  t.same(counters, { published: 1, publishOverflows: 0, publishFailures: 0 })
})

t.test('kafka: a failed request is held until stale, a refused record is not', async (t) => {
  const { p, producer } = publisher(10_000, 300)
  const sentAt = Date.now()
  const lost = outcome(p.publish(deliver(1, sentAt), undefined))
  producer.requests[0]?.reject(new Error('Connection closed'))
  const l = await lost
  t.notOk(l.ok)
  t.ok(l.at - sentAt > 300, 'a request that may have been written rejects once stale')
  const refusedAt = Date.now()
  const refused = outcome(p.publish(deliver(2, refusedAt), undefined))
  await new Promise((resolve) => setImmediate(resolve))
  producer.requests[1]?.reject(Object.assign(new Error('too large'), { type: 'MESSAGE_TOO_LARGE' }))
  const r = await refused
  t.notOk(r.ok)
  t.ok(r.at - refusedAt < 300, 'the broker refused it, so it was not written: rejected at once')
})

import t from 'tap'
import type { WebSocket } from 'ws'
import { Heartbeat, type Timers } from '../lib/connections/heartbeat.js'
import { Connection } from '../lib/connections/connection.js'
import { ConnectionManager } from '../lib/connections/connection-manager.js'
import { FakeSocket, recordingLogger } from './fakes/fake-socket.js'

/** Timers the test advances by hand. */
class FakeTimers implements Timers {
  callback: (() => void) | null = null
  ms = 0
  cleared = false
  setInterval = (callback: () => void, ms: number): unknown => {
    this.callback = callback
    this.ms = ms
    return 1
  }

  clearInterval = (): void => { this.cleared = true }
  fire (): void { this.callback?.() }
}

t.test('a socket that misses a pong is terminated on the next tick', async (t) => {
  const manager = new ConnectionManager({ instanceId: 'i', maxBufferedBytes: 100, log: recordingLogger().log })
  const mute = new FakeSocket()
  const lively = new FakeSocket()
  const a = new Connection('a', 'ip', null, mute as unknown as WebSocket)
  const b = new Connection('b', 'ip', null, lively as unknown as WebSocket)
  manager.add(a)
  manager.add(b)
  const timers = new FakeTimers()
  const heartbeat = new Heartbeat(manager, 25_000, timers)
  heartbeat.start()
  t.equal(timers.ms, 25_000)

  timers.fire()
  t.equal(mute.pings, 1)
  t.equal(lively.pings, 1)
  b.alive = true // lively answered with a pong
  timers.fire()
  t.equal(mute.terminated, true)
  t.equal(manager.get('a'), undefined)
  t.equal(lively.terminated, false)
  t.equal(lively.pings, 2)
  t.equal(heartbeat.terminated, 1)

  heartbeat.stop()
  t.equal(timers.cleared, true)
})

t.test('interval 0 never schedules', async (t) => {
  const manager = new ConnectionManager({ instanceId: 'i', maxBufferedBytes: 100, log: recordingLogger().log })
  const timers = new FakeTimers()
  new Heartbeat(manager, 0, timers).start()
  t.equal(timers.callback, null)
})

import t from 'tap'
import { build, connect, until } from './helpers.js'
import { HubProtocolError, type HubService } from '../lib/index.js'

t.test('custom types go to onMessage, which can reply and use the dispatcher', async (t) => {
  const seen: string[] = []
  const service: HubService = {
    onConnect: (ctx) => { seen.push(`connect ${ctx.client.id}`) },
    onMessage: async (message, ctx) => {
      if (message.type === 'roll') {
        ctx.reply({ type: 'rolled', value: 4 })
        return
      }
      if (message.type === 'shout') {
        await ctx.hub.broadcast(`${ctx.client.id} shouts`)
        return
      }
      throw new HubProtocolError('unknown_type', `no ${message.type} here`)
    },
    onDisconnect: (ctx, info) => { seen.push(`disconnect ${ctx.client.id} ${info.code}`) }
  }
  const { wsUrl } = await build(t, { service })
  const a = await connect(wsUrl)
  const b = await connect(wsUrl)
  a.send({ type: 'roll', id: 'r1' })
  t.match(await a.next('rolled'), { value: 4 })
  t.equal((await a.next('ack')).id, 'r1', 'acked after the hook settles')
  a.send({ type: 'shout' })
  t.equal((await b.next('server-broadcast')).message, `${a.clientId} shouts`)
  a.send({ type: 'dance', id: 2 })
  t.match(await a.next('error'), { code: 'unknown_type', message: 'no dance here', id: 2 })
  a.send({ type: 'broadcast', message: 'built-ins still work' })
  t.equal((await b.next('message')).message, 'built-ins still work')
  a.close()
  await until(() => seen.includes(`disconnect ${a.clientId} 1005`))
  t.ok(seen.includes(`connect ${a.clientId}`))
})

t.test('a throwing or rejecting hook is logged with the client id and harms no one', async (t) => {
  const lines: string[] = []
  const stream = { write: (line: string) => { lines.push(line) } }
  const service: HubService = {
    onConnect: async () => { throw new Error('connect boom') },
    onMessage: () => { throw new Error('message boom') },
    onDisconnect: () => { throw new Error('disconnect boom') }
  }
  const { wsUrl, app } = await build(t, { service }, { logger: { level: 'error', stream } })
  const a = await connect(wsUrl)
  const b = await connect(wsUrl)
  a.send({ type: 'custom', id: 'c' })
  const error = await a.next('error')
  t.same({ code: error.code, id: error.id }, { code: 'service_error', id: 'c' })
  t.notMatch(String(error.message), /boom/, 'internal error text is not leaked to the client')
  a.close()
  await until(() => lines.some((l) => l.includes('disconnect boom')))
  b.send({ type: 'ping', id: 1 })
  t.equal((await b.next('pong')).id, 1, 'other connections unaffected')
  for (const text of ['connect boom', 'message boom', 'disconnect boom']) {
    const line = lines.find((l) => l.includes(text))
    t.ok(line, `${text} logged`)
    t.match(JSON.parse(line ?? '{}'), { clientId: /./ })
  }
  t.equal(app.wsHub.stats().serviceErrors, 1)
})

t.test('a service without onMessage leaves custom types unknown', async (t) => {
  const { wsUrl } = await build(t, { service: { onConnect: () => {} } })
  const a = await connect(wsUrl)
  a.send({ type: 'x' })
  t.equal((await a.next('error')).code, 'unknown_type')
})

t.test('a class-based service keeps its this', async (t) => {
  class Counter implements HubService {
    count = 0
    async onConnect (): Promise<void> { this.count++ }
    async onMessage (_message: unknown, ctx: { reply: (f: { type: string, [k: string]: unknown }) => void }): Promise<void> {
      this.count++
      ctx.reply({ type: 'count', value: this.count })
    }
  }
  const service = new Counter()
  const { wsUrl } = await build(t, { service })
  const a = await connect(wsUrl)
  a.send({ type: 'tick' })
  t.equal((await a.next('count')).value, 2)
})

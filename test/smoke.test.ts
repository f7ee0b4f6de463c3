import t from 'tap'
import { build, connect } from './helpers.js'

t.test('broadcast reaches every client including the sender', async (t) => {
  const { wsUrl } = await build(t)
  const a = await connect(wsUrl)
  const b = await connect(wsUrl)
  a.send({ type: 'broadcast', message: { hello: 1 }, id: 7 })
  const atA = await a.next('message')
  const atB = await b.next('message')
  t.same(atA.message, { hello: 1 })
  t.equal(atB.from, a.clientId)
  t.same((await a.next('ack')).id, 7)
  a.close(); b.close()
})

import t from 'tap'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { fileURLToPath } from 'node:url'

const run = promisify(execFile)
const root = fileURLToPath(new URL('..', import.meta.url))

// `npm test` builds first; this checks what users install: plain node
// importing the package by name through package.json "exports".
t.test('plain node can import the built package by name', async (t) => {
  const script = `
    import wsHub, { ConnectionManager, MessageDispatcher } from 'fastify-ws-hub'
    import Fastify from 'fastify'
    const app = Fastify()
    await app.register(wsHub, { rest: false, heartbeatInterval: 0 })
    await app.ready()
    console.log(JSON.stringify({
      plugin: typeof wsHub,
      manager: app.connectionManager instanceof ConnectionManager,
      dispatcher: app.messageDispatcher instanceof MessageDispatcher
    }))
    await app.close()
  `
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: root })
  t.same(JSON.parse(stdout), { plugin: 'function', manager: true, dispatcher: true })
})

t.test('the memory-only path never loads ioredis or kafkajs', async (t) => {
  const script = `
    import { createRequire } from 'node:module'
    import wsHub from 'fastify-ws-hub'
    import Fastify from 'fastify'
    const app = Fastify()
    await app.register(wsHub, { rest: false, heartbeatInterval: 0 })
    await app.ready()
    const require = createRequire(import.meta.url)
    const loaded = Object.keys(require.cache).filter((k) => /node_modules[\\\\/](ioredis|kafkajs)[\\\\/]/.test(k))
    console.log(JSON.stringify(loaded))
    await app.close()
  `
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: root })
  t.same(JSON.parse(stdout), [])
})

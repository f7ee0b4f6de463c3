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
    import wsHub, { WsHub } from 'fastify-ws-hub'
    import { transportSuite, limiterSuite, directorySuite } from 'fastify-ws-hub/testing'
    import Fastify from 'fastify'
    const app = Fastify()
    await app.register(wsHub, { rest: false, heartbeatIntervalMs: 0 })
    await app.ready()
    console.log(JSON.stringify({
      plugin: typeof wsHub,
      facade: app.wsHub instanceof WsHub,
      suites: [transportSuite, limiterSuite, directorySuite].map((s) => typeof s)
    }))
    await app.close()
  `
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: root })
  t.same(JSON.parse(stdout), { plugin: 'function', facade: true, suites: ['function', 'function', 'function'] })
})

t.test('the memory-only path never loads ioredis or kafkajs', async (t) => {
  const script = `
    import { createRequire } from 'node:module'
    import wsHub from 'fastify-ws-hub'
    import Fastify from 'fastify'
    const app = Fastify()
    await app.register(wsHub, { rest: false, heartbeatIntervalMs: 0 })
    await app.ready()
    const require = createRequire(import.meta.url)
    const loaded = Object.keys(require.cache).filter((k) => /node_modules[\\\\/](ioredis|kafkajs)[\\\\/]/.test(k))
    console.log(JSON.stringify(loaded))
    await app.close()
  `
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: root })
  t.same(JSON.parse(stdout), [])
})

// ioredis and kafkajs are optional peers: a user who picks a backend without
// its package gets told which package to install, not a stack trace.
t.test('a backend whose optional package is missing fails with a coded error naming the package', async (t) => {
  const hooks = `export async function resolve (specifier, context, next) {
    if (specifier === 'ioredis' || specifier === 'kafkajs') {
      const err = new Error("Cannot find package '" + specifier + "' imported from the hub")
      err.code = 'ERR_MODULE_NOT_FOUND'
      throw err
    }
    return next(specifier, context)
  }`
  const script = `
    import { register } from 'node:module'
    register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(hooks)}))
    const { default: wsHub } = await import('fastify-ws-hub')
    const { default: Fastify } = await import('fastify')
    const out = []
    for (const option of [{ registry: { type: 'redis', url: 'redis://127.0.0.1:1' } }, { broker: { type: 'kafka', brokers: ['127.0.0.1:1'] } }]) {
      const app = Fastify()
      try {
        await app.register(wsHub, { rest: false, heartbeatIntervalMs: 0, ...option })
        out.push('registered')
      } catch (err) {
        out.push({ code: err.code, message: err.message })
      }
      await app.close().catch(() => {})
    }
    console.log(JSON.stringify(out))
  `
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: root })
  const [redis, kafka] = JSON.parse(stdout) as Array<{ code: string, message: string }>
  t.equal(redis?.code, 'WS_HUB_MISSING_PACKAGE')
  t.match(redis?.message, /npm install ioredis/)
  t.equal(kafka?.code, 'WS_HUB_MISSING_PACKAGE')
  t.match(kafka?.message, /npm install kafkajs/)
})

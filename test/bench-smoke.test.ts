import t from 'tap'
import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { METRIC_KEYS } from '../bench/report.js'
import { SYSTEM_NAMES } from '../bench/systems/system.js'

const run = promisify(execFile)
const root = fileURLToPath(new URL('..', import.meta.url))
const CLIENTS = 200

// Compiling bench/ and running five systems takes longer than tap's default
// per-file timeout on a busy machine; the bench run itself is bounded below.
t.setTimeout(240_000)

// Runs `npm run bench -- --quick` the way the script does (compile bench/,
// run the compiled orchestrator) with a few hundred clients. It checks that
// the harness works end to end, never how fast anything is: the machine
// running the tests is shared and its timings mean nothing.
t.test('the quick bench runs every system and reports every metric', async (t) => {
  t.ok(existsSync(join(root, 'dist', 'index.js')), 'dist/ is built (npm test builds first)')
  await run(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'bench', 'tsconfig.json')], { cwd: root, timeout: 60_000 })

  const dir = mkdtempSync(join(tmpdir(), 'ws-hub-bench-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const out = join(dir, 'results.json')
  const { stdout } = await run(process.execPath, [join(root, '.build', 'bench', 'run.js'), '--quick', '--clients', String(CLIENTS), '--deliveries', '10000', '--out', out], {
    cwd: root,
    timeout: 120_000,
    killSignal: 'SIGINT', // the orchestrator then kills the servers and drivers it started
    maxBuffer: 16 * 1024 * 1024
  })

  t.match(stdout, /connections accepted \/s/, 'prints the table')
  for (const label of ['hub', 'hub (send)', 'hub (batch)', '@fastify/websocket', 'ws', 'socket.io']) t.match(stdout, label)

  const report: unknown = JSON.parse(readFileSync(out, 'utf8'))
  const runs = field(report, 'runs')
  if (!Array.isArray(runs)) throw new Error('no runs in the JSON')
  for (const system of SYSTEM_NAMES) {
    const entry: unknown = runs.find((r: unknown) => field(r, 'system') === system && field(r, 'clients') === CLIENTS)
    t.equal(field(entry, 'ok'), true, `${system} ran (${String(field(entry, 'error') ?? '')})`)
    const metrics = field(entry, 'metrics')
    for (const metric of METRIC_KEYS) {
      const value = field(metrics, metric)
      // RSS is the one figure that may honestly be 0 or even negative with a
      // couple of hundred clients: new connections fit in memory the process
      // already holds (free space in old-space pages, V8's young generation),
      // and GC may return pages in between. It must still be a number.
      const rss = metric === 'rssBytesPerConnection'
      const good = typeof value === 'number' && Number.isFinite(value) && (rss || value > 0)
      t.ok(good, `${system} ${metric} is a finite ${rss ? '' : 'positive '}number (${String(value)})`)
    }
  }
  t.equal(field(report, 'baseline'), 'fastify-websocket')
  t.ok(Array.isArray(field(report, 'crossInstance')), 'the cross-instance extension point is in the JSON')
})

function field (value: unknown, name: string): unknown {
  return typeof value === 'object' && value !== null ? Reflect.get(value, name) : undefined
}

t.test('the stream-latency bench measures cross-instance latency through Redis, and conflation', { skip: (process.env.REDIS_URL ?? '') === '' ? 'REDIS_URL not set' : false }, async (t) => {
  // bench/ was compiled by the test above (tap runs a file's tests in order).
  const env = { ...process.env }
  delete env.KAFKA_BROKERS
  const { stdout } = await run(process.execPath, [join(root, '.build', 'bench', 'stream-latency.js'), '--rate', '500', '--seconds', '1'], { cwd: root, env, timeout: 60_000 })
  const json = stdout.trim().split('\n').pop() ?? '[]'
  const { streams, conflation } = JSON.parse(json) as {
    streams: Array<{ scenario: string, sent: number, local: { received: number, p50Ms: number }, remote: { received: number, p50Ms: number } }>
    conflation: { sent: number, received: number, conflatedDrops: number, latestDelivered: boolean }
  }
  const [redis] = streams
  t.equal(redis?.scenario, 'redis')
  t.ok((redis?.sent ?? 0) > 100, 'a stream was sent')
  t.equal(redis?.local.received, redis?.sent, 'every message reached the local client')
  t.equal(redis?.remote.received, redis?.sent, 'every message crossed to the other instance')
  t.ok(Number.isFinite(redis?.remote.p50Ms), 'latency measured')
  t.ok(conflation.received > 0 && conflation.received < conflation.sent / 5, `conflation thinned ${conflation.sent} to ${conflation.received}`)
  t.equal(conflation.received + conflation.conflatedDrops, conflation.sent, 'every update was delivered or counted as replaced')
  t.equal(conflation.latestDelivered, true, 'the subscriber ended on the latest value')
})

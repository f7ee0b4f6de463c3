import { mkdir, copyFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import type { Page } from 'playwright-core'
import { buildExampleApp } from '../example/app.js'
import { until } from './helpers.js'
import { haveChromium, launchChromium } from './helpers/browser.js'
import { freePort } from './helpers/redis-server.js'

// The chat page in a real (headless) Chromium against the example app.
// The example imports the plugin by name and serves the client from dist/:
// run `npm run build` first (`npm test` does). UPDATE_SCREENSHOT=1 also
// refreshes docs/chat.png, the README's picture.

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const SCREENSHOT = join(ROOT, 'test-artifacts', 'chat.png')
const README_SCREENSHOT = join(ROOT, 'docs', 'chat.png')
const VIEWPORT = { width: 1000, height: 700 }
const UUID = /^[0-9a-f-]{36}$/
const XSS = '<img src=x onerror=alert(1)>'
/** Page waits: generous, since a reconnect waits out a backoff delay. */
const WAIT_MS = 20_000

async function startExample (port: number): Promise<FastifyInstance> {
  const app = await buildExampleApp({}, { logger: false })
  await app.listen({ port, host: '127.0.0.1' })
  return app
}

/** Waits until the page's status reads `state`. */
async function waitForStatus (t: Test, page: Page, state: 'connected' | 'reconnecting'): Promise<void> {
  await page.locator(`#status[data-state="${state}"]`).waitFor({ timeout: WAIT_MS })
  t.equal(await page.locator('#status').textContent(), state)
}

async function clientIdOf (page: Page): Promise<string> {
  await page.locator('#client-id').filter({ hasText: UUID }).waitFor({ timeout: WAIT_MS })
  return (await page.locator('#client-id').textContent()) ?? ''
}

async function send (page: Page, message: string, target?: string): Promise<void> {
  await page.fill('#message-input', message)
  if (target === undefined) {
    await page.click('#send-broadcast')
  } else {
    await page.fill('#target-input', target)
    await page.click('#send-direct')
  }
}

function item (page: Page, type: string, text: string): ReturnType<Page['locator']> {
  return page.locator(`#messages li[data-type="${type}"]`, { hasText: text })
}

if (haveChromium(t)) {
  t.test('two chat pages: broadcast, direct, text-only rendering, reconnect after a restart', async (t) => {
    const port = await freePort()
    let app = await startExample(port)
    t.teardown(() => app.close())
    const url = `http://127.0.0.1:${port}/`

    const browser = await launchChromium(t)
    const dialogs: string[] = []
    const pageErrors: string[] = []
    const open = async (): Promise<Page> => {
      const context = await browser.newContext({ viewport: VIEWPORT })
      const page = await context.newPage()
      page.on('dialog', (dialog) => {
        dialogs.push(dialog.message())
        dialog.dismiss().catch(() => {})
      })
      page.on('pageerror', (err) => pageErrors.push(err.message))
      await page.goto(url)
      return page
    }
    const [a, b] = await Promise.all([open(), open()])

    await waitForStatus(t, a, 'connected')
    await waitForStatus(t, b, 'connected')
    const [aId, bId] = await Promise.all([clientIdOf(a), clientIdOf(b)])
    t.match(aId, UUID, 'page A shows its client id')
    t.match(bId, UUID, 'page B shows its client id')
    t.not(aId, bId)

    await send(a, 'hello from A')
    await item(a, 'message', 'hello from A').waitFor({ timeout: WAIT_MS })
    await item(b, 'message', 'hello from A').waitFor({ timeout: WAIT_MS })
    t.match(await item(a, 'message', 'hello from A').textContent(), /you hello from A/, 'A sees its own broadcast as "you"')
    t.match(await item(b, 'message', 'hello from A').textContent(), `${aId} hello from A`, 'B sees it from A')

    await send(a, 'only for B', bId)
    await item(b, 'direct', 'only for B').waitFor({ timeout: WAIT_MS })
    await item(a, 'sent', 'only for B').waitFor({ timeout: WAIT_MS })
    t.equal(await a.locator('#messages li[data-type="direct"]').count(), 0, 'the direct message reached only its target')
    t.match(await item(b, 'direct', 'only for B').textContent(), `${aId} → you`)

    await send(a, XSS)
    for (const page of [a, b]) {
      const shown = item(page, 'message', XSS)
      await shown.waitFor({ timeout: WAIT_MS })
      t.ok(await shown.isVisible(), 'the markup is visible as text')
      t.equal(await shown.locator('span').textContent(), XSS, 'exactly the text sent')
      t.equal(await page.locator('img').count(), 0, 'no img element was created')
    }

    // Prices tick once a second: wait for all three before the picture.
    for (let row = 0; row < 3; row++) await b.locator('#prices tbody tr').nth(row).locator('td').filter({ hasText: /\d/ }).waitFor({ timeout: WAIT_MS })
    await b.fill('#message-input', 'Hi everyone!')
    await mkdir(dirname(SCREENSHOT), { recursive: true })
    await b.screenshot({ path: SCREENSHOT })
    if (process.env.UPDATE_SCREENSHOT === '1') {
      await mkdir(dirname(README_SCREENSHOT), { recursive: true })
      await copyFile(SCREENSHOT, README_SCREENSHOT)
      t.comment(`updated ${README_SCREENSHOT}`)
    }
    await b.fill('#message-input', '')

    // The server goes away: the pages say so and keep trying.
    await app.close()
    await waitForStatus(t, a, 'reconnecting')
    await waitForStatus(t, b, 'reconnecting')
    t.equal(await a.locator('#client-id').textContent(), '…', 'no client id while disconnected')
    t.ok(await a.locator('#send-broadcast').isDisabled(), 'sending is off while disconnected')

    // A new server on the same port: both pages come back with new ids and
    // their subscriptions.
    app = await startExample(port)
    await waitForStatus(t, a, 'connected')
    await waitForStatus(t, b, 'connected')
    const [aId2, bId2] = await Promise.all([clientIdOf(a), clientIdOf(b)])
    t.not(aId2, aId, 'A has a new client id')
    t.not(bId2, bId, 'B has a new client id')
    await item(a, 'system', 'Reconnected.').waitFor({ timeout: WAIT_MS })
    const restarted = app
    // The example runs the built package, so it is asked through its public facade.
    await until(async () => (await restarted.wsHub.list()).connections.filter((c) => c.topics.includes('prices')).length === 2, WAIT_MS, 'both pages subscribed to prices again')
    await send(b, 'back again')
    await item(a, 'message', 'back again').waitFor({ timeout: WAIT_MS })

    t.same(dialogs, [], 'no dialog ever opened')
    t.same(pageErrors, [], 'no uncaught error in the pages')
  })

  t.test('notifications: two tabs of one user get each one; a tab cut off catches up on reconnect', async (t) => {
    const port = await freePort()
    const app = await startExample(port)
    t.teardown(() => app.close())
    const browser = await launchChromium(t)
    // One context: one localStorage, so one demo user with two "devices".
    const context = await browser.newContext({ viewport: VIEWPORT })
    const pageErrors: string[] = []
    const open = async (): Promise<Page> => {
      const page = await context.newPage()
      page.on('pageerror', (err) => pageErrors.push(err.message))
      await page.goto(`http://127.0.0.1:${port}/`)
      await waitForStatus(t, page, 'connected')
      return page
    }
    const first = await open()
    const second = await open()
    const topic = (await first.locator('#inbox-topic').textContent()) ?? ''
    t.match(topic, /^user:u-[0-9a-f]{8}$/, 'the page shows its inbox topic')
    t.equal(await second.locator('#inbox-topic').textContent(), topic, 'both tabs are the same user')
    const notification = (page: Page, text: string): ReturnType<Page['locator']> => page.locator('#notifications li', { hasText: text })
    // The subscribe is acked before the ack of the history request; wait until both hold it.
    await until(async () => (await app.wsHub.list()).connections.filter((c) => c.topics.includes(topic)).length === 2, WAIT_MS, 'both tabs subscribed to the inbox')

    await app.wsHub.publish(topic, { text: 'Your order shipped', at: new Date().toISOString() })
    for (const page of [first, second]) await notification(page, 'Your order shipped').waitFor({ timeout: WAIT_MS })

    // The first tab's connection is cut (1000: it reconnects) and a
    // notification is published before it is back.
    const firstId = await clientIdOf(first)
    await app.wsHub.close({ clientId: firstId }, { code: 1000, reason: 'test' })
    await app.wsHub.publish(topic, { text: 'While you were away', at: new Date().toISOString() })
    await notification(second, 'While you were away').waitFor({ timeout: WAIT_MS })
    await first.locator('#notifications-status', { hasText: 'Recovered 1 missed notification.' }).waitFor({ timeout: WAIT_MS })
    await notification(first, 'While you were away').waitFor({ timeout: WAIT_MS })
    t.not(await clientIdOf(first), firstId, 'a new connection')
    t.equal(await first.locator('#notifications li').count(), 2, 'each notification shown once')

    await second.click('#notify-me')
    for (const page of [first, second]) await notification(page, 'You asked for a notification').waitFor({ timeout: WAIT_MS })
    t.same(pageErrors, [], 'no uncaught error in the pages')
  })
}

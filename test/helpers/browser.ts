import { existsSync } from 'node:fs'
import { chromium, type Browser } from 'playwright-core'

export interface TapLike {
  fail: (message: string) => void
  plan: (n: number, comment?: string) => void
  teardown: (fn: () => unknown) => void
}

/** Debian's `chromium` package; Playwright's own browser downloads are not used. */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync'
]

/**
 * Whether the browser is installed. Missing: the file is skipped, except
 * under CI, where skipping would let the chat page ship untested.
 */
export function haveChromium (t: TapLike): boolean {
  if (existsSync(CHROMIUM_PATH)) return true
  if (process.env.CI === 'true') {
    t.fail(`${CHROMIUM_PATH} not found but CI=true: the browser test must run in CI (apt-get install chromium chromium-driver)`)
  } else {
    t.plan(0, `${CHROMIUM_PATH} not found; install Debian's chromium package to run the browser test`)
  }
  return false
}

/** A headless Chromium with a fresh profile, closed when the test ends. */
export async function launchChromium (t: TapLike): Promise<Browser> {
  const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS, timeout: 30_000 })
  t.teardown(() => browser.close())
  return browser
}

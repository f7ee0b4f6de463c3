/**
 * The few methods of a tap test the conformance suites use. Structural, so
 * the suites run under tap (which this project uses) and ship without a
 * dependency on it; another runner needs only a small adapter.
 *
 * Messages are rest parameters because tap's own signatures take them that
 * way; an optional parameter would not accept tap's `t`.
 */
type Message = [] | [message: string]
type Wanted = RegExp | { message: string | RegExp, name?: string, code?: string } | { name: string, code?: string } | { code: string }

export interface TapLike {
  test: (name: string, fn: (t: TapLike) => Promise<void>) => unknown
  teardown: (fn: () => unknown) => void
  equal: (found: unknown, wanted: unknown, ...message: Message) => unknown
  not: (found: unknown, notWanted: unknown, ...message: Message) => unknown
  same: (found: unknown, wanted: unknown, ...message: Message) => unknown
  ok: (value: unknown, ...message: Message) => unknown
  rejects: (promise: Promise<unknown> | (() => Promise<unknown>), ...args: [] | [wanted: Wanted] | [wanted: Wanted, message: string]) => unknown
}

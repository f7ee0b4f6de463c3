/**
 * The few methods of a tap test the conformance suites use. Structural, so
 * the suites run under tap (which this project uses) and ship without a
 * dependency on it; another runner needs only a small adapter.
 */
export interface TapLike {
  test: (name: string, fn: (t: TapLike) => Promise<void>) => unknown
  teardown: (fn: () => unknown) => void
  equal: (found: unknown, wanted: unknown, message?: string) => unknown
  not: (found: unknown, notWanted: unknown, message?: string) => unknown
  same: (found: unknown, wanted: unknown, message?: string) => unknown
  ok: (value: unknown, message?: string) => unknown
  rejects: (promise: Promise<unknown> | (() => Promise<unknown>), wanted?: object, message?: string) => Promise<unknown> | unknown
}

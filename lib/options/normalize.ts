import Type, { type Static, type TObject, type TSchema, type TUnion, type TUnsafe } from 'typebox'
import { Compile, type Validator } from 'typebox/compile'
import { OptionsError } from '../errors.js'

/**
 * An optional field that normalization fills with `value` when it is left
 * out. The default is kept in the type too, so `Filled` can tell a field
 * that will always be present from one that may stay undefined.
 */
export function withDefault<S extends TSchema, const V extends Static<S>> (schema: S, value: V) {
  return Type.Optional(Type.With(schema, { default: value }))
}

/**
 * A value the user hands over and the hub uses as is (a function, a client,
 * a registry): checked for its JavaScript type only, typed precisely.
 */
export function opaque<T> (schema: TSchema): TUnsafe<T> {
  return Type.Unsafe<T>(schema)
}

/** The type of a value after normalization: every field with a default is present. */
export type Filled<S> =
  S extends TUnsafe<infer T> ? T
    : S extends TObject<infer P> ? { [K in keyof P]: P[K] extends { default: unknown } ? Filled<P[K]> : P[K] extends { '~optional': true } ? Filled<P[K]> | undefined : Filled<P[K]> }
      : S extends TUnion<infer V> ? Filled<V[number]>
        : S extends TSchema ? Static<S> : never

/** The fields of an object schema that have a default, with their filled types. */
export type DefaultsOf<S> = S extends TObject<infer P>
  ? { readonly [K in keyof P as P[K] extends { default: unknown } ? K : never]: Filled<P[K]> }
  : never

/**
 * A deprecated option name, accepted for one release. `scale` converts the
 * old unit to the new one (seconds to milliseconds).
 */
export interface Alias {
  from: string
  to: string
  scale?: number
}

/**
 * Validates option objects against one schema. Each object is cloned first,
 * so defaults and alias renames never reach the caller's object; class
 * instances (clients, registries) are kept by reference, not copied.
 */
export class OptionSchema<S extends TSchema> {
  readonly schema: S
  readonly #validator: Validator<{}, S>
  readonly #aliases: readonly Alias[]

  constructor (schema: S, aliases: readonly Alias[] = []) {
    this.schema = schema
    this.#validator = Compile(schema)
    this.#aliases = aliases
  }

  /** Every field's default, deep-frozen: what normalization fills into `{}`. */
  defaults (): DefaultsOf<S> {
    // Only fields with a default get one, which is exactly what DefaultsOf lists.
    return deepFreeze(this.#validator.Default({}) as DefaultsOf<S>)
  }

  /** `name` prefixes the option names in errors: `broker` gives `broker.partitions`. */
  normalize (input: unknown, name: string): Filled<S> {
    // Renamed on a shallow copy first, so an old key is copied as what it now is.
    const shallow = isRecord(input) ? { ...input } : input
    const renamed = renameAliases(shallow, this.#aliases, name)
    const value = cloneAlong(this.schema, shallow)
    const filled = this.#validator.Default(value)
    if (this.#validator.Check(filled)) {
      // Checked after every default was filled in, which is what Filled describes.
      return filled as Filled<S>
    }
    throw new OptionsError(this.#explain(filled, name, renamed))
  }

  #explain (value: unknown, name: string, renamed: ReadonlyMap<string, Renamed>): string {
    const errors = this.#validator.Errors(value)
    const chosen = pickError(errors)
    if (chosen === undefined) return `fastify-ws-hub: option "${name === '' ? 'options' : name}" is invalid`
    const found = resolve(this.schema, chosen)
    const path = found.path.join('.')
    const alias = renamed.get(path)
    const option = join(name, alias?.from ?? path)
    if (found.kind === 'unknown') {
      return `fastify-ws-hub: option "${option}" is not a known option${REMOVED.get(option) ?? ''}`
    }
    if (found.kind === 'required') return `fastify-ws-hub: option "${option}" is required`
    const got = alias === undefined ? valueAt(value, found.path) : alias.value
    return `fastify-ws-hub: option "${option}" ${found.message} (got ${describe(got)})`
  }
}

/** Options that were removed, with what to write instead. */
const REMOVED = new Map([
  ['registry.registry', '; a custom registry is now { type: \'custom\', limiter, directory }']
])

interface Renamed {
  from: string
  value: unknown
}

const warned = new Set<string>()

function renameAliases (value: unknown, aliases: readonly Alias[], name: string): ReadonlyMap<string, Renamed> {
  const renamed = new Map<string, Renamed>()
  if (!isRecord(value)) return renamed
  for (const { from, to, scale } of aliases) {
    if (!(from in value) || value[from] === undefined) continue
    if (to in value && value[to] !== undefined) {
      throw new OptionsError(`fastify-ws-hub: option "${join(name, from)}" is the deprecated name of "${join(name, to)}"; give only "${join(name, to)}"`)
    }
    const old = value[from]
    value[to] = typeof old === 'number' && scale !== undefined ? old * scale : old
    delete value[from]
    renamed.set(to, { from, value: old })
    const unit = scale === undefined ? '' : ' (in ms: the old one was in seconds)'
    if (!warned.has(from)) {
      warned.add(from)
      process.emitWarning(`fastify-ws-hub: option "${join(name, from)}" is deprecated; use "${join(name, to)}"${unit}`, { type: 'DeprecationWarning', code: 'WS_HUB_DEPRECATED_OPTION' })
    }
  }
  return renamed
}

type ValidationError = ReturnType<Validator['Errors']>[number]

/**
 * The error that best tells the user what to fix: the deepest one, since a
 * union reports a mismatch for every branch it did not take, at its own
 * level, as well as the real failure inside the branch that fits.
 */
function pickError (errors: readonly ValidationError[]): ValidationError | undefined {
  let best: ValidationError | undefined
  let bestDepth = -1
  for (const error of errors) {
    if (error.keyword === 'anyOf') continue
    // At one depth, a missing field says more than "not the other branch of a union" (`false | { size, ttlMs }`).
    const depth = segments(error.instancePath).length + (error.keyword === 'boolean' ? 0.5 : error.keyword === 'required' ? 0.25 : 0)
    if (depth > bestDepth) {
      best = error
      bestDepth = depth
    }
  }
  return best ?? errors[0]
}

interface Resolved {
  kind: 'unknown' | 'required' | 'invalid'
  path: string[]
  message: string
}

/**
 * Walks the failing schema path from the root. The outermost node with an
 * `errorMessage` speaks for everything beneath it (so a list of brokers says
 * what a list should be, not what its third character is); failing that, a
 * union speaks for its branches, since "must be equal to constant" names
 * none of them.
 */
function resolve (root: TSchema, error: ValidationError): Resolved {
  const instance = segments(error.instancePath)
  if (error.keyword === 'boolean') return { kind: 'unknown', path: instance, message: '' }
  if (error.keyword === 'additionalProperties' || error.keyword === 'required') {
    const params: Record<string, unknown> = isRecord(error.params) ? error.params : {}
    const names = params.additionalProperties ?? params.requiredProperties
    const key = Array.isArray(names) ? String(names[0]) : ''
    return { kind: error.keyword === 'required' ? 'required' : 'unknown', path: [...instance, key], message: '' }
  }
  const steps = segments(error.schemaPath.replace(/^#/, ''))
  let node: unknown = root
  let depth = 0
  let union: { depth: number, node: Record<string, unknown> } | undefined
  for (let i = 0; i < steps.length && isRecord(node); i++) {
    if (typeof node.errorMessage === 'string') {
      return { kind: 'invalid', path: instance.slice(0, depth), message: node.errorMessage }
    }
    const step = steps[i] ?? ''
    if (step === 'anyOf') union ??= { depth, node }
    // A record's values (`patternProperties`) are one level down, like properties.
    if (step === 'properties' || step === 'items' || step === 'patternProperties') {
      union = undefined
      depth++
    }
    node = step === 'properties' || step === 'anyOf' || step === 'patternProperties' ? child(node[step], steps[++i] ?? '') : node[step]
  }
  if (isRecord(node) && typeof node.errorMessage === 'string') {
    return { kind: 'invalid', path: instance.slice(0, depth), message: node.errorMessage }
  }
  if (isRecord(node) && Array.isArray(node.enum)) {
    return { kind: 'invalid', path: instance, message: `must be one of ${node.enum.map((v: unknown) => JSON.stringify(v)).join(', ')}` }
  }
  if (union !== undefined) return { kind: 'invalid', path: instance.slice(0, union.depth), message: `must be ${describeUnion(union.node)}` }
  return { kind: 'invalid', path: instance, message: error.message }
}

function describeUnion (node: Record<string, unknown>): string {
  const branches = Array.isArray(node.anyOf) ? node.anyOf : []
  const parts = branches.map((branch: unknown): string => {
    if (!isRecord(branch)) return 'valid'
    if ('const' in branch) return JSON.stringify(branch.const)
    switch (branch.type) {
      case 'object': return 'an object'
      case 'array': return 'an array'
      case 'function': return 'a function'
      case 'integer': return 'an integer'
      default: return `a ${String(branch.type)}`
    }
  })
  if (parts.length > 2 && branches.every((b: unknown) => isRecord(b) && 'const' in b)) return `one of ${parts.join(', ')}`
  return parts.join(' or ')
}

function segments (pointer: string): string[] {
  return pointer === '' ? [] : pointer.split('/').slice(1).map((s) => s.replaceAll('~1', '/').replaceAll('~0', '~'))
}

function join (prefix: string, path: string): string {
  return prefix === '' ? path : path === '' ? prefix : `${prefix}.${path}`
}

/**
 * Copies plain objects and arrays, so defaults and renames are written to
 * the copy. What the user hands over to be used as is (a schema made with
 * `opaque`, or any class instance) keeps its identity: the hub must use the
 * very transport or client it was given, and close none of them.
 */
function cloneAlong (schema: unknown, value: unknown): unknown {
  if (isRecord(schema) && Type.IsUnsafe(schema)) return value
  if (Array.isArray(value)) return value.map((item) => cloneAlong(isRecord(schema) ? schema.items : undefined, item))
  if (!isRecord(value) || !isPlain(value)) return value
  const copy: Record<string, unknown> = {}
  for (const [key, item] of Object.entries(value)) copy[key] = cloneAlong(propertySchema(schema, key), item)
  return copy
}

/** The schema of `key`: in a union, the first branch that declares it; in a record, the pattern it matches. */
function propertySchema (schema: unknown, key: string): unknown {
  if (!isRecord(schema)) return undefined
  if (isRecord(schema.properties) && Object.hasOwn(schema.properties, key)) return schema.properties[key]
  if (isRecord(schema.patternProperties)) {
    for (const [pattern, value] of Object.entries(schema.patternProperties)) if (new RegExp(pattern, 'u').test(key)) return value
  }
  if (!Array.isArray(schema.anyOf)) return undefined
  for (const branch of schema.anyOf) {
    const found = propertySchema(branch, key)
    if (found !== undefined) return found
  }
  return undefined
}

function isPlain (value: object): boolean {
  const proto: unknown = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

function child (parent: unknown, key: string): unknown {
  if (Array.isArray(parent)) return parent[Number(key)]
  return isRecord(parent) ? parent[key] : undefined
}

function valueAt (root: unknown, path: readonly string[]): unknown {
  return path.reduce(child, root)
}

export function describe (value: unknown): string {
  if (typeof value === 'function') return 'a function'
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}

export function isRecord (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function deepFreeze<T> (value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const inner of Object.values(value)) deepFreeze(inner)
  }
  return value
}

/**
 * Whether an MQTT topic filter matches a topic name (`+` one level, `#`
 * the rest). A filter starting with a wildcard does not match a `$` topic,
 * as brokers do.
 */
export function filterMatches (filter: string, topic: string): boolean {
  const levels = filter.split('/')
  const names = topic.split('/')
  if (topic.startsWith('$') && (levels[0] === '+' || levels[0] === '#')) return false
  for (const [i, level] of levels.entries()) {
    if (level === '#') return true
    if (i >= names.length) return false
    if (level !== '+' && level !== names[i]) return false
  }
  return levels.length === names.length
}

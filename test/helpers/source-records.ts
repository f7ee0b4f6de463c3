/** What the source tests produce and compare: a default-shape record, and runs of numbers. */
export const record = (n: number, topic = 'room'): string => JSON.stringify({ topic, message: { n } })
export const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i)
export const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

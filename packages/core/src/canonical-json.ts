import { QuorateError } from './errors.js'

/**
 * RFC 8785 (JCS) canonical JSON. Keys sorted by UTF-16 code units, numbers in
 * ECMAScript shortest form (JSON.stringify gives that for finite numbers), strings
 * escaped as JSON.stringify does (which matches RFC 8785's rules). Strings (values and
 * keys) must be well-formed UTF-16: a lone surrogate has no UTF-8 encoding, so two
 * implementations could hash it differently (one escapes it, another writes U+FFFD);
 * the reference implementation refuses it, and so do we.
 */
export function canonicalize (value: unknown): string {
  const parts: string[] = []
  write(value, parts, '$', 0)
  return parts.join('')
}

/**
 * Deepest nesting of arrays and objects that canonical JSON and strict parsing accept. Our formats
 * nest less than 20 levels; without a bound, a gossiped statement nested thousands of levels deep
 * (a 64 KiB envelope holds about 24,000) overflowed the stack in canonicalize with a RangeError
 * instead of being rejected as malformed.
 */
export const MAX_JSON_DEPTH = 64

const encoder = new TextEncoder()

export function canonicalBytes (value: unknown): Uint8Array {
  return encoder.encode(canonicalize(value))
}

function write (value: unknown, out: string[], path: string, depth: number): void {
  if (value === null) { out.push('null'); return }
  switch (typeof value) {
    case 'boolean': out.push(value ? 'true' : 'false'); return
    case 'string': out.push(jsonString(value, path)); return
    case 'number':
      if (!Number.isFinite(value)) throw new QuorateError('CANONICAL_JSON', `${path}: ${value} cannot be written as JSON`)
      out.push(JSON.stringify(value)); return
    case 'object':
      if (depth >= MAX_JSON_DEPTH) throw new QuorateError('CANONICAL_JSON', `${path.slice(0, 200)}: nested deeper than ${MAX_JSON_DEPTH} levels`)
      break
    default:
      throw new QuorateError('CANONICAL_JSON', `${path}: a ${typeof value} cannot be written as JSON`)
  }
  if (Array.isArray(value)) {
    out.push('[')
    value.forEach((v, i) => {
      if (i > 0) out.push(',')
      write(v, out, `${path}[${i}]`, depth + 1)
    })
    out.push(']')
    return
  }
  if (value instanceof Uint8Array) throw new QuorateError('CANONICAL_JSON', `${path}: bytes cannot be written as JSON; encode them first`)
  const obj = value as Record<string, unknown>
  // Absent optional fields are omitted, never written as null: drop undefined values.
  const keys = Object.keys(obj).filter(k => obj[k] !== undefined).sort(compareUtf16)
  out.push('{')
  keys.forEach((k, i) => {
    if (i > 0) out.push(',')
    out.push(jsonString(k, `${path} (key ${JSON.stringify(k)})`), ':')
    write(obj[k], out, `${path}.${k}`, depth + 1)
  })
  out.push('}')
}

function jsonString (s: string, path: string): string {
  if (!s.isWellFormed()) {
    const i = [...s].findIndex(ch => ch.length === 1 && ch.charCodeAt(0) >= 0xd800 && ch.charCodeAt(0) <= 0xdfff)
    throw new QuorateError('CANONICAL_JSON', `${path}: the string has a lone UTF-16 surrogate${i >= 0 ? ` at character ${i}` : ''}, which RFC 8785 (I-JSON) does not allow; remove it or encode it`)
  }
  return JSON.stringify(s)
}

function compareUtf16 (a: string, b: string): number {
  // Default JS string comparison is by UTF-16 code units, which is what RFC 8785 asks for.
  return a < b ? -1 : a > b ? 1 : 0
}

/**
 * Parses JSON text and refuses duplicate object keys (DESIGN.md: a payload with
 * duplicate keys is malformed, since two parsers could pick different values).
 */
export function parseJsonStrict (text: string, what: string): unknown {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new QuorateError('ENVELOPE_MALFORMED', `${what}: not valid JSON (${(err as Error).message})`)
  }
  const problem = structureProblem(text)
  if (problem !== undefined) throw new QuorateError('ENVELOPE_MALFORMED', `${what}: ${problem}`)
  return value
}

/**
 * A small scanner over valid JSON text that tracks keys per object level: finds duplicate keys
 * and nesting deeper than MAX_JSON_DEPTH.
 */
function structureProblem (text: string): string | undefined {
  // Runs on every envelope received (twice: the envelope and its payload), so it jumps from quote
  // to quote with indexOf instead of stepping through every character of long strings such as
  // the base64 payload (about 4x faster on our envelopes).
  const stack: Array<Set<string> | null> = []
  let i = 0
  let expectKey = false
  while (i < text.length) {
    const c = text.charCodeAt(i)
    if (c === 34) { // "
      let j = text.indexOf('"', i + 1)
      // a quote preceded by an odd number of backslashes is escaped: look further
      for (let b = countBackslashesBefore(text, j); b % 2 === 1; b = countBackslashesBefore(text, j)) j = text.indexOf('"', j + 1)
      const top = stack[stack.length - 1]
      if (top != null && expectKey) {
        const raw = text.slice(i, j + 1)
        const key = raw.includes('\\') ? JSON.parse(raw) as string : raw.slice(1, -1)
        if (top.has(key)) return 'an object has the same key twice'
        top.add(key)
        expectKey = false
      }
      i = j + 1
      continue
    }
    if (c === 123 || c === 91) { // { [
      if (stack.length >= MAX_JSON_DEPTH) return `nested deeper than ${MAX_JSON_DEPTH} levels`
      stack.push(c === 123 ? new Set() : null)
      expectKey = c === 123
    } else if (c === 125 || c === 93) { stack.pop() } else if (c === 44) { expectKey = stack[stack.length - 1] != null } // } ] ,
    i++
  }
  return undefined
}

function countBackslashesBefore (text: string, at: number): number {
  let n = 0
  while (text.charCodeAt(at - 1 - n) === 92) n++
  return n
}

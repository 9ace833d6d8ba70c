// Issue 14 item 10: a file list read entry by entry (FileListScanner), so a list of 500,000 files
// is never one string in memory. Property: for any list of entries (names with braces, quotes,
// backslashes and non-ASCII), cut into chunks anywhere, the scanner yields exactly the entries;
// anything but the canonical layout is refused.
import { describe, it, expect } from 'vitest'
import fc from 'fast-check'
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { canonicalBytes, isQuorateError } from '@quorate/core'
import { FileListScanner, readFileListEntries } from '../src/index.js'

const SCALE = Number(process.env.QUORATE_FUZZ_RUNS ?? 1)
const runs = (n: number): { numRuns: number } => ({ numRuns: Math.max(1, Math.round(n * SCALE)) })

const pathArb = fc.array(fc.constantFrom('a', '{', '}', '[', ']', '"', '\\', ',', 'é', '\u{1F600}', '/', ' '), { minLength: 1, maxLength: 12 }).map(a => a.join(''))
const entryArb = fc.oneof(
  fc.record({ path: pathArb, type: fc.constant('file'), size: fc.nat(), sha256: fc.constant('ab'.repeat(32)), executable: fc.constant(true) }, { requiredKeys: ['path', 'type', 'size', 'sha256'] }),
  fc.record({ path: pathArb, type: fc.constant('dir') }),
  fc.record({ path: pathArb, type: fc.constant('symlink'), target: pathArb })
)

function scanAll (bytes: Uint8Array, cuts: number[]): Array<Record<string, unknown>> {
  const scanner = new FileListScanner('file list x')
  const out: Array<Record<string, unknown>> = []
  let at = 0
  for (const cut of [...cuts.map(c => c % (bytes.byteLength + 1)).sort((a, b) => a - b), bytes.byteLength]) {
    out.push(...scanner.push(bytes.subarray(at, Math.max(at, cut))))
    at = Math.max(at, cut)
  }
  scanner.end()
  return out
}

describe('FileListScanner', () => {
  it('yields exactly the entries of a canonical file list, however it is cut', () => {
    fc.assert(fc.property(fc.array(entryArb, { maxLength: 20 }), fc.array(fc.nat(), { maxLength: 8 }), (files, cuts) => {
      const bytes = canonicalBytes({ version: 1, files })
      expect(scanAll(bytes, cuts)).toEqual(JSON.parse(Buffer.from(bytes).toString('utf8')).files)
    }), runs(300))
  })

  it('refuses other layouts, truncation, non-object entries and bad JSON with OUTPUT_INVALID', () => {
    const refused = (text: string): boolean => {
      try { scanAll(Buffer.from(text), []) } catch (err) { return isQuorateError(err, 'OUTPUT_INVALID') }
      return false
    }
    expect(refused('{"version":1,"files":[]}')).toBe(true) // not canonical (keys out of order)
    expect(refused('{"files": [],"version":1}')).toBe(true)
    expect(refused('{"files":[{"path":"a","type":"dir"}')).toBe(true) // truncated
    expect(refused('{"files":[{"path":"a","type":"dir"},],"version":1}')).toBe(true)
    expect(refused('{"files":[1],"version":1}')).toBe(true)
    expect(refused('{"files":[{"path":"a" "type":"dir"}],"version":1}')).toBe(true)
    expect(refused('{"files":[{"path":"a","type":"dir"}],"version":1}x')).toBe(true)
    expect(refused('{"files":[],"version":2}')).toBe(true)
    expect(refused(`{"files":[{"path":"${'a'.repeat(70_000)}"}],"version":1}`)).toBe(true) // an entry over 64 KiB
    expect(refused('{"files":[],"version":1}')).toBe(false)
  })

  it('reads a list of 100,000 entries from a file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'quorate-list-'))
    try {
      const files = Array.from({ length: 100_000 }, (_, i) => ({ path: `d${i % 1000}/f${String(i).padStart(7, '0')}`, sha256: 'cd'.repeat(32), size: 7, type: 'file' }))
      writeFileSync(join(dir, 'list'), canonicalBytes({ version: 1, files }))
      let n = 0
      let last: Record<string, unknown> | undefined
      for await (const e of readFileListEntries(join(dir, 'list'))) { n++; last = e }
      expect(n).toBe(100_000)
      expect(last).toEqual(files[99_999])
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

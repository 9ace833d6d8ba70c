// Property-based check of the file list hashOutput writes piece by piece (issue 14 item 10): for
// random trees whose names mix the characters where sort orders disagree ('-' and '.' sort before
// '/', 'é', U+E000–U+FFFF and characters above U+FFFF, where UTF-16 and UTF-8 orders differ), the
// bytes are exactly the RFC 8785 canonical JSON of the whole list sorted by path bytes, and the
// NAR hash is the one hashNar computes.
// QUORATE_FUZZ_RUNS=10 multiplies the runs for a longer local session.
import { describe, it, expect, afterEach } from 'vitest'
import fc from 'fast-check'
import { createHash } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { canonicalBytes } from '@quorate/core'
import { hashOutput, hashNar } from '../src/index.js'
import { tempDirs, writeTree, type TreeSpec } from './helpers.js'

const SCALE = Number(process.env.QUORATE_FUZZ_RUNS ?? 1)
const runs = (n: number): { numRuns: number } => ({ numRuns: Math.max(1, Math.round(n * SCALE)) })

const nameArb = fc.array(fc.constantFrom('a', 'B', '-', '.', '_', 'é', '\uE000', '\uFFFD', '\u{1F600}', '\u{10000}', '0', ' '), { minLength: 1, maxLength: 4 })
  .map(a => a.join('')).filter(n => n !== '.' && n !== '..')

const treeArb: fc.Arbitrary<TreeSpec> = fc.letrec<{ tree: TreeSpec }>(tie => ({
  tree: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.record({ file: fc.string({ maxLength: 12 }), mode: fc.constantFrom(0o644, 0o755) }),
    fc.record({ symlink: fc.constantFrom('x', '../out', 'a/é') }),
    fc.dictionary(nameArb, tie('tree'), { maxKeys: 4 }).map(dir => ({ dir }))
  )
})).tree.map(t => ('dir' in t ? t : { dir: { only: t } }))

describe('fuzz: the file list written piece by piece', () => {
  const temp = tempDirs()
  afterEach(temp.cleanup)

  it('equals the canonical JSON of the whole list sorted by path bytes, for names where sort orders disagree', async () => {
    const dir = await temp.make()
    let n = 0
    await fc.assert(fc.asyncProperty(treeArb, async tree => {
      const root = join(dir, `t${n++}`)
      await writeTree(root, tree)
      const d = await hashOutput(root)
      const sorted = [...d.fileList.files].sort((a, b) => Buffer.compare(Buffer.from(a.path, 'utf8'), Buffer.from(b.path, 'utf8')))
      expect(d.fileList.files.map(f => f.path)).toEqual(sorted.map(f => f.path))
      const reference = canonicalBytes({ version: 1, files: sorted })
      expect(Buffer.from(d.fileListBytes).equals(Buffer.from(reference))).toBe(true)
      expect(d.fileListSha256).toBe(createHash('sha256').update(reference).digest('hex'))
      expect(d.narSha256).toBe(await hashNar(root))
    }), runs(60))
  })

  it('writes a list longer than one piece (thousands of entries) byte for byte like the whole-list canonical JSON', async () => {
    const dir = await temp.make()
    await writeTree(join(dir, 'out'), { dir: { d: { dir: {} }, 'd-x': { file: 'x', mode: 0o644 }, 'd.y': { dir: {} } } })
    for (let i = 0; i < 1500; i++) writeFileSync(join(dir, 'out', 'd', `f-${'x'.repeat(80)}-${i}${i % 7 === 0 ? '\u{1F600}' : i % 5 === 0 ? '\uE000' : ''}`), String(i), { mode: 0o644 })
    const d = await hashOutput(join(dir, 'out'))
    expect(d.fileListBytes.byteLength).toBeGreaterThan(256 * 1024)
    const sorted = [...d.fileList.files].sort((a, b) => Buffer.compare(Buffer.from(a.path, 'utf8'), Buffer.from(b.path, 'utf8')))
    expect(Buffer.from(d.fileListBytes).equals(Buffer.from(canonicalBytes({ version: 1, files: sorted })))).toBe(true)
  })
})

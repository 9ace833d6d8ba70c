import { describe, it, expect, afterEach } from 'vitest'
import { mkdirSync, writeFileSync, existsSync, rmSync, readdirSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { SMALL_BLOB_BYTES } from '@quorate/store'
import { outputs } from '../src/outputs.js'
import { tempStore, memoryLogger } from './helpers.js'

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => { for (const c of cleanups.splice(0)) await c() })
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

describe('outputs in the store\'s blob store', () => {
  it('keeps the file list and every output file by hash; small files in the LevelDB, large ones in blobs/ (removable to reclaim space)', async () => {
    const t = await tempStore()
    cleanups.push(t.cleanup)
    const copy = join(t.dir, 'copy')
    mkdirSync(join(copy, 'sub'), { recursive: true })
    const small = Buffer.from('console.log("hi")\n')
    const large = Buffer.alloc(SMALL_BLOB_BYTES + 1, 7)
    writeFileSync(join(copy, 'app.js'), small)
    writeFileSync(join(copy, 'sub', 'big.bin'), large)
    const fileList = Buffer.from('{"version":1,"files":[]}')
    const o = outputs({ store: t.store, logger: memoryLogger() })
    await o.keep({
      fileListSha256: sha(fileList),
      fileListBytes: fileList,
      copyDir: copy,
      files: [{ path: 'app.js', type: 'file', sha256: sha(small) }, { path: 'sub', type: 'dir' }, { path: 'sub/big.bin', type: 'file', sha256: sha(large) }]
    })
    rmSync(copy, { recursive: true })
    expect(Buffer.from((await o.fileList(sha(fileList)))!)).toEqual(fileList)
    expect(Buffer.from((await o.file(sha(small)))!)).toEqual(small)
    expect(Buffer.from((await o.file(sha(large)))!)).toEqual(large)
    expect(readdirSync(join(t.dir, 'blobs'))).toEqual([sha(large).slice(0, 2)])
    // Retention: deleting blobs/ drops the large files only; the store still opens and serves the rest.
    rmSync(join(t.dir, 'blobs'), { recursive: true })
    expect(await o.file(sha(large))).toBeUndefined()
    expect(Buffer.from((await o.file(sha(small)))!)).toEqual(small)
  })

  it('moves the files/ directory of older releases into the blob store and removes it', async () => {
    const t = await tempStore()
    cleanups.push(t.cleanup)
    const legacy = join(t.dir, 'files')
    mkdirSync(legacy)
    const a = Buffer.from('a file kept by an older release\n')
    writeFileSync(join(legacy, sha(a)), a)
    writeFileSync(join(legacy, 'not-a-digest'), 'ignored')
    const o = outputs({ store: t.store, logger: memoryLogger() })
    expect(await o.adoptLegacyFiles(legacy)).toBe(1)
    expect(existsSync(legacy)).toBe(false)
    expect(Buffer.from((await o.file(sha(a)))!)).toEqual(a)
    expect(await o.adoptLegacyFiles(legacy)).toBe(0)
  })

  it('refuses a small file whose content does not match its hash', async () => {
    const t = await tempStore()
    cleanups.push(t.cleanup)
    writeFileSync(join(t.dir, 'x'), 'changed after hashing')
    await expect(t.store.putOutputFile('0'.repeat(64), join(t.dir, 'x'))).rejects.toThrow(/does not hash to/)
  })

  it('keeps an output of many files in batches: every file kept, one that changed after hashing reported by path, the rest unaffected', async () => {
    const t = await tempStore()
    cleanups.push(t.cleanup)
    const copy = join(t.dir, 'copy')
    mkdirSync(copy)
    const files: Array<{ path: string, type: string, sha256: string }> = []
    for (let i = 0; i < 1300; i++) { // three batches of 512 and a bit
      const body = Buffer.from(`file ${i}\n`)
      writeFileSync(join(copy, `f${i}`), body)
      files.push({ path: `f${i}`, type: 'file', sha256: sha(body) })
    }
    const large = Buffer.alloc(SMALL_BLOB_BYTES + 10, 3)
    writeFileSync(join(copy, 'large'), large)
    files.push({ path: 'large', type: 'file', sha256: sha(large) }, { path: 'again', type: 'file', sha256: files[0]!.sha256 })
    writeFileSync(join(copy, 'again'), 'file 0\n')
    writeFileSync(join(copy, 'f700'), 'changed after hashing')
    const logger = memoryLogger()
    const list = Buffer.from('{"files":[],"version":1}')
    await outputs({ store: t.store, logger }).keep({ fileListSha256: sha(list), fileListBytes: list, copyDir: copy, files })
    const o = outputs({ store: t.store, logger: memoryLogger() })
    for (const [i, f] of files.entries()) {
      if (f.path === 'f700') continue
      expect((await o.file(f.sha256))?.byteLength, f.path).toBe(i < 1300 || f.path === 'again' ? Buffer.from(`file ${f.path === 'again' ? 0 : i}\n`).byteLength : large.byteLength)
    }
    expect(await o.file(files[700]!.sha256)).toBeUndefined()
    expect(logger.lines.filter(l => l.event === 'output not kept').map(l => l.path)).toEqual(['f700'])
  })
})

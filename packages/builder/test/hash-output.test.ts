import { describe, it, expect, afterEach } from 'vitest'
import { join } from 'node:path'
import { mkdir, writeFile, readFile, readdir, stat } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import { isQuorateError } from '@quorate/core'
import { hashOutput, hashNar } from '../src/index.js'
import { GOLDEN_TREES } from './golden-trees.js'
import { tempDirs, writeTree, execFileP } from './helpers.js'

/**
 * Expected NAR hashes, produced once with Debian's Nix (apt-get install -y nix-bin) by writing
 * each GOLDEN_TREES entry with writeTree() and running `nix-store --dump PATH | sha256sum`.
 * CI does not need nix-bin. The file-list hashes are our own format, recorded from the same run
 * after checking the listings by hand.
 */
const GOLDEN: Record<string, { nar: string, fileList: string }> = {
  'empty-dir': { nar: 'a50a5ab6d992f5598edd92105059fae9acfc192981e08bd88534c2167e92526a', fileList: 'e5eccfdf0ce59ef36eb6f436f75e124e7979c91641945c21fbccdf585f335c56' },
  'single-file': { nar: '0a430879c266f8b57f4092a0f935cf3facd48bbccde5760d4748ca405171e969', fileList: 'e2469c801e4bc3a891e4afa3e8d73753d7154d1c7323b1effcda78990240a876' },
  'executable-file': { nar: 'a52f8c65390786db77445d8ef20191b8d94075a4c3a772081abe1b4646bcc335', fileList: '49ab99b08e08a363e1adbfd2d4b80926dac749ae203cc8cf53b1c1700ea89d0e' },
  'big-file': { nar: '9cc93622b17ed2980c9d8b5c97fb306f3c9a04c7df2d0c2c773ad14a353d8f87', fileList: 'c874d8ad083fd2b3861e07bdd18643ab1fb6fb9d30b4d926557536d9850148fb' },
  symlink: { nar: 'd20bd003cf1872cdb44990b47371b6b3ad76034cf64ca214a156a4484639f424', fileList: '66ef10f2983c50913b605fa5788be0ab0e8ca3bba566862b77ab37299cb004c6' },
  nested: { nar: '0cf3a727e10bd1c324ff06c24987541439c31c5ccdeca989dd0d93791da4f966', fileList: '207ef9623730d3e5ba57c7c5711fa32242f12f6dd72ed045b7cf969234710af7' }
}

const sha256 = (data: string | Uint8Array): string => createHash('sha256').update(data).digest('hex')

describe('hashOutput', () => {
  const temp = tempDirs()
  afterEach(temp.cleanup)

  it('matches nix-store --dump on the golden trees', async () => {
    const dir = await temp.make()
    expect(Object.keys(GOLDEN).sort()).toEqual(Object.keys(GOLDEN_TREES).sort())
    for (const [name, spec] of Object.entries(GOLDEN_TREES)) {
      const path = join(dir, name)
      await writeTree(path, spec)
      const digest = await hashOutput(path)
      expect({ name, nar: digest.narSha256, fileList: digest.fileListSha256 }).toEqual({ name, ...GOLDEN[name] })
      expect(await hashNar(path)).toBe(GOLDEN[name].nar)
      expect(digest.fileListSha256).toBe(sha256(digest.fileListBytes!))
      // written to a file instead (a node's builds): the same bytes, none kept in memory
      const toFile = await hashOutput(path, { fileListTo: join(dir, `${name}.list`) })
      expect(toFile.fileListBytes).toBeUndefined()
      expect(toFile.fileListPath).toBe(join(dir, `${name}.list`))
      expect(toFile.fileListSha256).toBe(digest.fileListSha256)
      expect((await readFile(join(dir, `${name}.list`))).equals(Buffer.from(digest.fileListBytes!))).toBe(true)
    }
  })

  it('lists files sorted by path bytes, with sizes, hashes, modes and targets', async () => {
    const dir = await temp.make()
    await writeTree(join(dir, 'nested'), GOLDEN_TREES.nested)
    const digest = await hashOutput(join(dir, 'nested'))
    expect(digest.fileList.files.map(f => f.path)).toEqual([
      'B', 'Z', '_', 'a', 'a-b', 'a.b', 'a/deep', 'a/deep/er', 'a/deep/er/eight.txt', 'a/empty', 'a/x', 'e', 'é'
    ])
    const byPath = new Map(digest.fileList.files.map(f => [f.path, f]))
    expect(byPath.get('a.b')).toEqual({ path: 'a.b', type: 'file', executable: true, size: 1, sha256: sha256('x') })
    expect(byPath.get('B')).toEqual({ path: 'B', type: 'file', size: 5, sha256: sha256('upper') })
    expect(byPath.get('_')).toEqual({ path: '_', type: 'symlink', target: '../outside/target' })
    expect(byPath.get('a/empty')).toEqual({ path: 'a/empty', type: 'dir' })
    expect(digest.topLevelFiles.map(f => f.name)).toEqual(['B', 'a-b', 'a.b', 'e', 'é'])
    expect(digest.fileCount).toBe(7)
    expect(digest.totalBytes).toBe(5 + 13 + 1 + 8 + 7 + 8 + 0)
    expect(new TextDecoder().decode(digest.fileListBytes)).toMatch(/^\{"files":\[\{"path":"B","sha256":"[0-9a-f]{64}","size":5,"type":"file"\},/)

    // A single file is listed and made a subject under its basename.
    const single = await hashOutput(join(dir, 'nested', 'a-b'))
    expect(single.fileList.files).toEqual([{ path: 'a-b', type: 'file', size: 13, sha256: sha256('thirteen byte') }])
    expect(single.topLevelFiles).toEqual([{ name: 'a-b', sha256: sha256('thirteen byte') }])
  })

  it('makes top-level files subjects only when there are at most 16', async () => {
    const dir = await temp.make()
    for (let i = 0; i < 17; i++) await writeFile(join(dir, `f${String(i).padStart(2, '0')}`), `${i}`)
    expect((await hashOutput(dir)).topLevelFiles).toEqual([])
    await mkdir(join(dir, 'sub'))
    await writeFile(join(dir, 'sub', 'f99'), 'nested files never count')
    await execFileP('rm', [join(dir, 'f16')])
    const digest = await hashOutput(dir)
    expect(digest.topLevelFiles).toHaveLength(16)
    expect(digest.topLevelFiles[0]).toEqual({ name: 'f00', sha256: sha256('0') })
  })

  it('refuses special files and non-UTF-8 names, naming the path', async () => {
    const dir = await temp.make()
    await mkdir(join(dir, 'out', 'sub'), { recursive: true })
    await writeFile(join(dir, 'out', 'ok.txt'), 'fine')
    await execFileP('mkfifo', [join(dir, 'out', 'sub', 'pipe')])
    const err = await hashOutput(join(dir, 'out')).catch((e: unknown) => e)
    expect(isQuorateError(err, 'OUTPUT_INVALID')).toBe(true)
    expect((err as Error).message).toContain(join(dir, 'out', 'sub', 'pipe'))
    expect((err as Error).message).toContain('fifo')

    await mkdir(join(dir, 'latin1'))
    await writeFile(Buffer.concat([Buffer.from(join(dir, 'latin1') + '/caf'), Buffer.from([0xe9])]), 'x')
    const err2 = await hashOutput(join(dir, 'latin1')).catch((e: unknown) => e)
    expect(isQuorateError(err2, 'OUTPUT_INVALID')).toBe(true)
    expect((err2 as Error).message).toContain(`${join(dir, 'latin1')}/caf\\xe9`)
    expect((err2 as Error).message).toContain('UTF-8')
  })

  it('stops at maxBytes and copies exactly what it hashed', async () => {
    const dir = await temp.make()
    const out = join(dir, 'out')
    await writeTree(out, GOLDEN_TREES.nested)
    await writeTree(join(out, 'big'), GOLDEN_TREES['big-file'])
    const total = (await hashOutput(out)).totalBytes
    const err = await hashOutput(out, { maxBytes: total - 1 }).catch((e: unknown) => e)
    expect(isQuorateError(err, 'OUTPUT_INVALID')).toBe(true)
    expect((err as Error).message).toContain('maxOutputBytes')

    const copy = join(dir, 'copy')
    const digest = await hashOutput(out, { maxBytes: total, copyTo: copy })
    const again = await hashOutput(copy)
    expect(again.narSha256).toBe(digest.narSha256)
    expect(again.fileListSha256).toBe(digest.fileListSha256)
    expect((await stat(join(copy, 'a.b'))).mode & 0o777).toBe(0o755)
    expect((await stat(join(copy, 'B'))).mode & 0o777).toBe(0o644)

    // A single-file output lands under its basename, so file-list paths resolve under the copy.
    const single = join(dir, 'single')
    await hashOutput(join(out, 'big'), { copyTo: single })
    expect(await readdir(single)).toEqual(['big'])
    expect(sha256(await readFile(join(single, 'big')))).toBe(sha256(await readFile(join(out, 'big'))))
  })
})

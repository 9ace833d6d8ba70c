// The file list `quorate fetch` writes from is hostile input until the tree verifies: what it
// refuses before anything touches the disk (issue 13).
import { describe, it, expect } from 'vitest'
import { isQuorateError } from '@quorate/core'
import { checkFileList } from '../src/fetch.js'

const H = 'a'.repeat(64)
const list = (files: unknown[]): unknown => ({ version: 1, files })
const refuse = (files: unknown[], why: RegExp): void => {
  try {
    checkFileList(list(files), 'file list x')
    expect.fail('should refuse')
  } catch (err) {
    expect(isQuorateError(err, 'OUTPUT_INVALID')).toBe(true)
    expect((err as Error).message).toMatch(why)
  }
}

describe('checkFileList', () => {
  it('accepts a normal tree and orders it by path bytes (parents first)', () => {
    const out = checkFileList(list([
      { path: 'lib/x.so', type: 'file', size: 3, sha256: H, executable: true },
      { path: 'bin', type: 'dir' },
      { path: 'lib', type: 'dir' },
      { path: 'bin/app', type: 'symlink', target: '../lib/x.so' },
      { path: 'lib-old', type: 'symlink', target: '/etc/passwd' }
    ]), 'l')
    expect(out.map(e => e.path)).toEqual(['bin', 'bin/app', 'lib', 'lib-old', 'lib/x.so'])
    expect(out[4]).toEqual({ path: 'lib/x.so', type: 'file', size: 3, sha256: H, executable: true })
  })

  it('refuses paths that leave the tree or are not plain', () => {
    refuse([{ path: '../evil', type: 'file', size: 1, sha256: H }], /"\.\." part/)
    refuse([{ path: 'a', type: 'dir' }, { path: 'a/../../evil', type: 'file', size: 1, sha256: H }], /"\.\." part/)
    refuse([{ path: '/etc/cron.d/x', type: 'file', size: 1, sha256: H }], /absolute path/)
    refuse([{ path: 'a//b', type: 'file', size: 1, sha256: H }], /empty/)
    refuse([{ path: './a', type: 'file', size: 1, sha256: H }], /"\."/)
    refuse([{ path: 'a\u0000b', type: 'file', size: 1, sha256: H }], /NUL/)
    refuse([{ path: 'a\ud800', type: 'file', size: 1, sha256: H }], /non-empty string/)
    refuse([{ path: '', type: 'dir' }], /non-empty string/)
  })

  it('refuses writing through a symlink or a file, undeclared parents and duplicates', () => {
    // "a" a symlink to /etc, then "a/passwd": would write outside the tree if followed.
    refuse([{ path: 'a', type: 'symlink', target: '/etc' }, { path: 'a/passwd', type: 'file', size: 1, sha256: H }], /does not declare as a directory/)
    refuse([{ path: 'a', type: 'file', size: 1, sha256: H }, { path: 'a/b', type: 'file', size: 1, sha256: H }], /does not declare as a directory/)
    refuse([{ path: 'x/y', type: 'file', size: 1, sha256: H }], /does not declare as a directory/)
    refuse([{ path: 'a', type: 'dir' }, { path: 'a', type: 'symlink', target: 'b' }], /listed twice/)
  })

  it('refuses malformed entries', () => {
    refuse([{ path: 'a', type: 'file', size: -1, sha256: H }], /size/)
    refuse([{ path: 'a', type: 'file', size: 1.5, sha256: H }], /size/)
    refuse([{ path: 'a', type: 'file', size: 1, sha256: 'zz' }], /sha256/)
    refuse([{ path: 'a', type: 'fifo' }], /type must be/)
    refuse([{ path: 'a', type: 'symlink', target: '' }], /target/)
    expect(() => checkFileList({ version: 2, files: [] }, 'l')).toThrow(/version 1/)
  })
})

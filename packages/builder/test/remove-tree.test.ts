// The runner removes a build's work directory a few entries at a time (remove-tree.ts):
// fs.promises.rm(…, { recursive: true }) started an operation per entry at once and took the
// runner 165 MB of memory for an output of 100,000 files (issue 14 item 10).
import { describe, it, expect } from 'vitest'
import { existsSync, mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { removeTree } from '../src/remove-tree.js'

describe('removeTree', () => {
  it('removes a tree of directories, files and symlinks (never following them), and a path that is gone already', async () => {
    const root = mkdtempSync(join(tmpdir(), 'quorate-remove-'))
    const outside = mkdtempSync(join(tmpdir(), 'quorate-remove-outside-'))
    writeFileSync(join(outside, 'keep'), 'not ours')
    for (let d = 0; d < 20; d++) {
      mkdirSync(join(root, `d${d}`, 'deeper'), { recursive: true })
      for (let f = 0; f < 150; f++) writeFileSync(join(root, `d${d}`, f % 2 === 0 ? `f${f}` : `deeper/f${f}`), String(f))
    }
    symlinkSync(outside, join(root, 'link-to-outside'))
    await removeTree(root)
    expect(existsSync(root)).toBe(false)
    expect(existsSync(join(outside, 'keep'))).toBe(true)
    await removeTree(root) // gone already: fine
    await removeTree(outside)
    expect(existsSync(outside)).toBe(false)
  })
})

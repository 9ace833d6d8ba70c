import { describe, it, expect } from 'vitest'
import { diffFileLists } from '../src/index.js'

describe('diffFileLists', () => {
  it('lists added, removed and changed files with what changed', () => {
    const before = { files: [
      { path: 'a', type: 'file' as const, size: 1, sha256: '1' },
      { path: 'b', type: 'file' as const, size: 2, sha256: '2' },
      { path: 'bin', type: 'file' as const, size: 3, sha256: '3' },
      { path: 'l', type: 'symlink' as const, target: 'a' },
      { path: 'd', type: 'dir' as const }
    ] }
    const after = { files: [
      { path: 'a', type: 'file' as const, size: 5, sha256: '9' },
      { path: 'bin', type: 'file' as const, size: 3, sha256: '3', executable: true },
      { path: 'c', type: 'file' as const, size: 1, sha256: '4' },
      { path: 'l', type: 'symlink' as const, target: 'c' },
      { path: 'd', type: 'file' as const, size: 0, sha256: '0' }
    ] }
    const d = diffFileLists(before, after)
    expect(d.added.map(f => f.path)).toEqual(['c'])
    expect(d.removed.map(f => f.path)).toEqual(['b'])
    expect(d.changed.map(c => [c.path, c.differs])).toEqual([['a', ['content']], ['bin', ['executable']], ['l', ['target']], ['d', ['type']]])
    expect(diffFileLists(before, before)).toEqual({ added: [], removed: [], changed: [] })
  })
})

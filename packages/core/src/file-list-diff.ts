/** One entry of a file list (DESIGN.md "The result and its digest"): the builder writes them, auditors compare them. */
export interface FileListEntry {
  /** Relative to the output root, '/'-separated; a single-file output is listed under its basename. */
  path: string
  type: 'file' | 'symlink' | 'dir'
  /** Owner-execute bit; only `true` is ever written. */
  executable?: boolean
  size?: number
  sha256?: string
  target?: string
}

export interface FileChange {
  path: string
  before: FileListEntry
  after: FileListEntry
  /** Which attributes differ: content, type, executable bit, symlink target. */
  differs: Array<'content' | 'type' | 'executable' | 'target'>
}

export interface FileListDiff { added: FileListEntry[], removed: FileListEntry[], changed: FileChange[] }

/** File-level difference between two builders' outputs: what `after` has that `before` does not. */
export function diffFileLists (before: { files: FileListEntry[] }, after: { files: FileListEntry[] }): FileListDiff {
  const a = new Map(before.files.map(f => [f.path, f]))
  const b = new Map(after.files.map(f => [f.path, f]))
  const added = after.files.filter(f => !a.has(f.path))
  const removed = before.files.filter(f => !b.has(f.path))
  const changed: FileChange[] = []
  for (const f of after.files) {
    const old = a.get(f.path)
    if (old === undefined) continue
    const differs: FileChange['differs'] = []
    if (old.type !== f.type) differs.push('type')
    else {
      if (old.sha256 !== f.sha256 || old.size !== f.size) differs.push('content')
      if ((old.executable === true) !== (f.executable === true)) differs.push('executable')
      if (old.target !== f.target) differs.push('target')
    }
    if (differs.length > 0) changed.push({ path: f.path, before: old, after: f, differs })
  }
  return { added, removed, changed }
}

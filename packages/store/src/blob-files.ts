import { createHash } from 'node:crypto'
import { chmod, copyFile, link, mkdir, readFile, rename, rm, stat } from 'node:fs/promises'
import { dirname, join } from 'node:path'

/**
 * Large blobs as read-only files named by their SHA-256 (`<dir>/<2 hex>/<62 hex>`), next to the
 * LevelDB that holds the small ones. A file appears under its final name only when complete
 * (link, or copy to a temporary name then rename), so a crash never leaves a truncated blob.
 */
export class BlobFiles {
  constructor (readonly dir: string) {}

  pathOf (sha256: string): string {
    return join(this.dir, sha256.slice(0, 2), sha256.slice(2))
  }

  /**
   * Keeps `source` under its digest: a hard link when it shares the filesystem, else a copy
   * (asynchronous: a large output must not hold up the node's event loop while it is copied).
   */
  async put (sha256: string, source: string): Promise<void> {
    const dest = this.pathOf(sha256)
    await mkdir(dirname(dest), { recursive: true })
    try {
      await link(source, dest)
      await chmod(dest, 0o444)
      return
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return
    }
    const tmp = `${dest}.${process.pid}.tmp`
    try {
      await copyFile(source, tmp)
      await chmod(tmp, 0o444)
      await rename(tmp, dest)
    } finally {
      await rm(tmp, { force: true })
    }
  }

  async has (sha256: string): Promise<boolean> {
    return await stat(this.pathOf(sha256)).then(() => true, () => false)
  }

  async remove (sha256: string): Promise<void> {
    await rm(this.pathOf(sha256), { force: true })
  }

  async get (sha256: string): Promise<Uint8Array | undefined> {
    try {
      return await readFile(this.pathOf(sha256))
    } catch {
      return undefined
    }
  }
}

export function sha256Of (bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

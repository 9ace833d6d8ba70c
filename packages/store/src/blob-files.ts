import { randomBytes } from 'node:crypto'
import { chmod, copyFile, link, mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
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

  /**
   * Takes a complete, verified file (a blob fetched from a peer, a written file list) under its
   * digest by renaming it: `source` must be on this filesystem (see tempPath).
   */
  async adopt (sha256: string, source: string): Promise<void> {
    const dest = this.pathOf(sha256)
    await mkdir(dirname(dest), { recursive: true })
    await chmod(source, 0o444)
    if (await this.has(sha256)) { await rm(source, { force: true }); return }
    try {
      await rename(source, dest)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err
      await this.put(sha256, source) // another filesystem: copied under a temporary name, then renamed
      await rm(source, { force: true })
    }
  }

  /** Keeps `bytes` under their digest (written to a temporary name, then renamed). */
  async write (sha256: string, bytes: Uint8Array): Promise<void> {
    if (await this.has(sha256)) return
    const tmp = await this.tempPath()
    try {
      await writeFile(tmp, bytes, { mode: 0o444 })
      await this.adopt(sha256, tmp)
    } finally {
      await rm(tmp, { force: true })
    }
  }

  /** A fresh path in this directory's filesystem for a file to adopt once it is complete. */
  async tempPath (): Promise<string> {
    await mkdir(join(this.dir, 'tmp'), { recursive: true })
    return join(this.dir, 'tmp', `${process.pid}-${randomBytes(8).toString('hex')}`)
  }

  /** Removes temporary files a stopped process left behind (call when no fetch or write runs). */
  async clearTemp (): Promise<void> {
    await rm(join(this.dir, 'tmp'), { recursive: true, force: true })
  }

  /** Opens a blob for reading by range, or undefined when this directory does not hold it. */
  async open (sha256: string): Promise<BlobFileReader | undefined> {
    let fh
    try {
      fh = await open(this.pathOf(sha256), 'r')
    } catch {
      return undefined
    }
    const f = fh
    const { size } = await f.stat()
    // One buffer per reader, reused: a reader streams a blob piece by piece, and a buffer per
    // piece left that much garbage per blob served (tens of MiB of resident memory before a GC).
    let reused = Buffer.alloc(0)
    return {
      size,
      path: this.pathOf(sha256),
      read: async (offset, length) => {
        const want = Math.max(0, Math.min(length, size - offset))
        if (reused.byteLength < want) reused = Buffer.allocUnsafe(want)
        const buf = reused.subarray(0, want)
        let got = 0
        while (got < buf.byteLength) {
          const { bytesRead } = await f.read(buf, got, buf.byteLength - got, offset + got)
          if (bytesRead === 0) break
          got += bytesRead
        }
        return buf.subarray(0, got)
      },
      close: async () => { await f.close() }
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

/** A blob opened for reading by range (the shape the network's BlobSource.open and the HTTP API take). */
export interface BlobFileReader {
  readonly size: number
  /** The file, for callers that stream it themselves (HTTP). */
  readonly path?: string
  /** Up to `length` bytes from `offset`; the bytes are valid until the next read (the buffer is reused). */
  read: (offset: number, length: number) => Promise<Uint8Array>
  close: () => Promise<void>
}

/** A blob held in memory, read by range. */
export function bytesBlobReader (bytes: Uint8Array): BlobFileReader {
  return { size: bytes.byteLength, read: async (offset, length) => bytes.subarray(offset, offset + length), close: async () => {} }
}

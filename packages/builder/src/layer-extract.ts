import { createHash } from 'node:crypto'
import { constants as fsConstants, createReadStream } from 'node:fs'
import { chmod, copyFile, lstat, lutimes, mkdir, open, readdir, readlink, rm, symlink, utimes, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { pipeline, type Readable } from 'node:stream'
import { createGunzip } from 'node:zlib'
import { QuorateError } from '@quorate/core'

/**
 * Unpacks OCI image layers (tar, optionally gzip) into a directory that nothing else writes,
 * treating every layer as hostile: no absolute or `..` paths, no writes through symlinks (a
 * parent symlink is followed only inside the root, chroot-style, and one that climbs out of it
 * is refused), whiteouts applied, device nodes and FIFOs refused, hard links materialized as
 * copies of a regular file already inside the root (any other hard link is refused), owners
 * not kept (everything belongs to the unpacking user), setuid/setgid bits cleared, and the
 * decompressed size capped.
 */

export interface LayerSource {
  /** Path of the (already digest-verified) blob, or an open descriptor of it. */
  blob: string | number
  compression: 'gzip' | 'none'
  /** Names the layer in errors, e.g. "layer 2 (sha256:…)". */
  where: string
}

export interface UnpackState {
  /** Bytes still allowed, decompressed, across all layers. */
  budget: number
  /** The whole cap (for messages). */
  cap: number
  /** Final directory modes, applied after the last layer (dirs stay owner-writable until then). */
  dirModes: Map<string, { mode: number, mtime: number }>
}

export interface LayerResult {
  /** SHA-256 (hex) of the decompressed tar: the image config's diff_id. */
  diffId: string
  bytes: number
}

function refused (where: string, why: string, fields: Record<string, unknown> = {}): QuorateError {
  return new QuorateError('ROOT_UNAVAILABLE', `${where}: ${why}; the image was refused and nothing of it was cached`, { kind: 'unpack', ...fields })
}

/** Pull-based reader over an async iterator of chunks. */
class ByteReader {
  private chunk: Buffer = Buffer.alloc(0)
  private offset = 0
  private done = false
  constructor (private readonly it: AsyncIterator<Buffer>) {}

  private async more (): Promise<boolean> {
    while (this.offset >= this.chunk.length) {
      if (this.done) return false
      const r = await this.it.next()
      if (r.done === true) { this.done = true; return false }
      this.chunk = r.value
      this.offset = 0
    }
    return true
  }

  /** Exactly n bytes, or null at a clean end before the first byte; a short read throws. */
  async read (n: number): Promise<Buffer | null> {
    const parts: Buffer[] = []
    let got = 0
    while (got < n) {
      if (!await this.more()) {
        if (got === 0) return null
        throw new Error('truncated tar stream')
      }
      const take = Math.min(n - got, this.chunk.length - this.offset)
      parts.push(this.chunk.subarray(this.offset, this.offset + take))
      this.offset += take
      got += take
    }
    return parts.length === 1 ? parts[0] : Buffer.concat(parts)
  }

  /** Reads everything left (so the whole stream is hashed). */
  async drain (): Promise<void> {
    while (await this.more()) this.offset = this.chunk.length
  }

  /** Passes n bytes to `sink` in pieces. */
  async stream (n: number, sink: (b: Buffer) => Promise<void>): Promise<void> {
    let left = n
    while (left > 0) {
      if (!await this.more()) throw new Error('truncated tar stream')
      const take = Math.min(left, this.chunk.length - this.offset)
      await sink(this.chunk.subarray(this.offset, this.offset + take))
      this.offset += take
      left -= take
    }
  }
}

interface Header {
  name: string
  linkname: string
  mode: number
  size: number
  mtime: number
  type: string
}

function cString (b: Buffer, start: number, len: number): string {
  const s = b.subarray(start, start + len)
  const nul = s.indexOf(0)
  return (nul < 0 ? s : s.subarray(0, nul)).toString('utf8')
}

function numeric (b: Buffer, start: number, len: number): number {
  const f = b.subarray(start, start + len)
  if ((f[0] & 0x80) !== 0) {
    // base-256 (GNU): big-endian, high bit set
    let v = 0
    for (let i = 1; i < f.length; i++) v = v * 256 + f[i]
    if (!Number.isSafeInteger(v)) throw new Error('number out of range')
    return v
  }
  const text = cString(b, start, len).trim()
  if (text === '') return 0
  if (!/^[0-7]+$/.test(text)) throw new Error(`bad octal field "${text}"`)
  return parseInt(text, 8)
}

function parseHeader (b: Buffer): Header {
  let sum = 0
  for (let i = 0; i < 512; i++) sum += (i >= 148 && i < 156) ? 32 : b[i]
  if (numeric(b, 148, 8) !== sum) throw new Error('bad header checksum')
  let name = cString(b, 0, 100)
  if (b.subarray(257, 262).toString('latin1') === 'ustar') {
    const prefix = cString(b, 345, 155)
    if (prefix !== '') name = `${prefix}/${name}`
  }
  return {
    name,
    linkname: cString(b, 157, 100),
    mode: numeric(b, 100, 8),
    size: numeric(b, 124, 12),
    mtime: numeric(b, 136, 12),
    type: String.fromCharCode(b[156] === 0 ? 48 : b[156])
  }
}

function parsePax (body: Buffer): Record<string, string> {
  const out: Record<string, string> = {}
  let i = 0
  while (i < body.length) {
    const sp = body.indexOf(0x20, i)
    if (sp < 0) break
    const len = parseInt(body.subarray(i, sp).toString('latin1'), 10)
    if (!Number.isSafeInteger(len) || len <= 0 || i + len > body.length) throw new Error('bad pax record')
    const rec = body.subarray(sp + 1, i + len - 1).toString('utf8')
    const eq = rec.indexOf('=')
    if (eq > 0) out[rec.slice(0, eq)] = rec.slice(eq + 1)
    i += len
  }
  return out
}

/** Components of a layer path; refuses absolute paths, `..` and NUL. */
function components (path: string, where: string): string[] {
  if (path.includes('\0')) throw refused(where, `the path ${JSON.stringify(path)} contains a NUL byte`)
  const stripped = path.replace(/^(\.\/)+/, '')
  if (stripped.startsWith('/')) throw refused(where, `the absolute path ${JSON.stringify(path)} would be written outside the root`, { path })
  const parts = stripped.split('/').filter(c => c !== '' && c !== '.')
  if (parts.includes('..')) throw refused(where, `the path ${JSON.stringify(path)} climbs out of the root with ".."`, { path })
  return parts
}

const MAX_META_BYTES = 1024 * 1024
const MAX_SYMLINK_HOPS = 40

/** One layer, applied on top of what `root` holds. */
export async function extractLayer (root: string, layer: LayerSource, state: UnpackState): Promise<LayerResult> {
  const where = layer.where
  const file = typeof layer.blob === 'number'
    ? createReadStream('', { fd: layer.blob, highWaterMark: 256 * 1024 })
    : createReadStream(layer.blob, { highWaterMark: 256 * 1024 })
  let source: Readable = file
  if (layer.compression === 'gzip') {
    const gunzip = createGunzip({ chunkSize: 256 * 1024 })
    pipeline(file, gunzip, () => {})
    source = gunzip
  }
  const hash = createHash('sha256')
  let bytes = 0
  const startBudget = state.budget
  async function * counted (): AsyncGenerator<Buffer> {
    for await (const chunk of source as AsyncIterable<Buffer>) {
      bytes += chunk.length
      if (bytes > startBudget) {
        throw refused(where, `the image unpacks to more than ${state.cap} bytes, the node's cap on a build root's decompressed size (roots.maxUnpackedBytes)`, { cap: state.cap })
      }
      hash.update(chunk)
      yield chunk
    }
  }
  const reader = new ByteReader(counted())
  const created = new Set<string>()
  const dirCache = new Map<string, string>()

  /**
   * The host path of the directory `comps` names inside root: missing directories are made
   * (when `make`), symlinks are followed inside the root only (an absolute target starts again
   * at the root; one that climbs above it is refused), and anything else in the way is refused.
   */
  const resolveDir = async (comps: string[], make: boolean): Promise<string | null> => {
    const key = comps.join('/')
    const hit = dirCache.get(key)
    if (hit !== undefined) return hit
    const at: string[] = []
    const queue = [...comps]
    let hops = 0
    while (queue.length > 0) {
      const c = queue.shift() as string
      if (c === '' || c === '.') continue
      if (c === '..') {
        if (at.length === 0) throw refused(where, `a symlink on the way to ${JSON.stringify(key)} leads outside the root`, { path: key })
        at.pop()
        continue
      }
      const host = join(root, ...at, c)
      const st = await lstat(host).catch((err: NodeJS.ErrnoException) => { if (err.code === 'ENOENT') return null; throw err })
      if (st === null) {
        if (!make) return null
        await mkdir(host, { mode: 0o755 })
        created.add(host)
        at.push(c)
      } else if (st.isDirectory()) {
        at.push(c)
      } else if (st.isSymbolicLink()) {
        if (++hops > MAX_SYMLINK_HOPS) throw refused(where, `too many symlinks on the way to ${JSON.stringify(key)}`, { path: key })
        const target = await readlink(host)
        if (target.startsWith('/')) at.length = 0
        queue.unshift(...target.split('/'))
      } else {
        throw refused(where, `${JSON.stringify(key)} needs ${JSON.stringify([...at, c].join('/'))} to be a directory, but it is a file`, { path: key })
      }
    }
    const dir = join(root, ...at)
    dirCache.set(key, dir)
    return dir
  }

  const removeExisting = async (host: string, keepDir: boolean): Promise<'dir' | 'none'> => {
    const st = await lstat(host).catch((err: NodeJS.ErrnoException) => { if (err.code === 'ENOENT') return null; throw err })
    if (st === null) return 'none'
    if (st.isDirectory() && keepDir) return 'dir'
    await rm(host, { recursive: true, force: true })
    dirCache.clear()
    return 'none'
  }

  let paxNext: Record<string, string> = {}
  let longName: string | undefined
  let longLink: string | undefined
  try {
    for (;;) {
      const block = await reader.read(512)
      if (block === null) break
      if (block.every(x => x === 0)) break
      const h = parseHeader(block)
      const padded = Math.ceil(h.size / 512) * 512
      if (h.type === 'x' || h.type === 'g' || h.type === 'L' || h.type === 'K') {
        if (h.size > MAX_META_BYTES) throw refused(where, `a tar metadata record of ${h.size} bytes exceeds ${MAX_META_BYTES}`)
        const body = (await reader.read(padded) ?? Buffer.alloc(0)).subarray(0, h.size)
        if (h.type === 'x') paxNext = parsePax(body)
        else if (h.type === 'L') longName = cString(body, 0, body.length)
        else if (h.type === 'K') longLink = cString(body, 0, body.length)
        continue
      }
      const name = paxNext.path ?? longName ?? h.name
      const linkname = paxNext.linkpath ?? longLink ?? h.linkname
      const size = paxNext.size !== undefined ? Number(paxNext.size) : h.size
      const mtime = paxNext.mtime !== undefined ? Math.floor(Number(paxNext.mtime)) : h.mtime
      paxNext = {}
      longName = undefined
      longLink = undefined
      if (!Number.isSafeInteger(size) || size < 0) throw refused(where, `bad size for ${JSON.stringify(name)}`)
      const bodyBytes = Math.ceil(size / 512) * 512
      const comps = components(name, where)
      const skipBody = async (): Promise<void> => { await reader.stream(bodyBytes, async () => {}) }
      if (comps.length === 0) { await skipBody(); continue } // the root itself ("./")
      const base = comps[comps.length - 1]
      // Permissions without setuid/setgid; the sticky bit stays (/tmp).
      const mode = h.mode & 0o1777

      if (base.startsWith('.wh.')) {
        await skipBody()
        const dir = await resolveDir(comps.slice(0, -1), false)
        if (dir === null) continue
        if (base === '.wh..wh..opq') {
          for (const child of await readdir(dir)) {
            const p = join(dir, child)
            if (!created.has(p)) await rm(p, { recursive: true, force: true })
          }
        } else {
          const victim = base.slice(4)
          if (victim === '' || victim === '.' || victim === '..') throw refused(where, `bad whiteout ${JSON.stringify(name)}`)
          await rm(join(dir, victim), { recursive: true, force: true })
        }
        dirCache.clear()
        continue
      }

      const dir = await resolveDir(comps.slice(0, -1), true) as string
      const host = join(dir, base)
      switch (h.type) {
        case '5': {
          await skipBody()
          if (await removeExisting(host, true) === 'none') await mkdir(host, { mode: 0o755 })
          await chmod(host, mode | 0o700)
          created.add(host)
          state.dirModes.set(host, { mode, mtime })
          break
        }
        case '0':
        case '7': {
          await removeExisting(host, false)
          const fh = await open(host, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW, 0o600)
          try {
            await reader.stream(size, async b => { await fh.write(b) })
          } finally {
            await fh.close()
          }
          await reader.stream(bodyBytes - size, async () => {})
          await chmod(host, mode)
          await utimes(host, mtime, mtime)
          created.add(host)
          break
        }
        case '2': {
          await skipBody()
          if (linkname === '' || linkname.includes('\0')) throw refused(where, `the symlink ${JSON.stringify(name)} has no usable target`)
          await removeExisting(host, false)
          await symlink(linkname, host)
          await lutimes(host, mtime, mtime)
          created.add(host)
          dirCache.clear()
          break
        }
        case '1': {
          await skipBody()
          // A hard link becomes a copy of a regular file already in the root; nothing else.
          const target = components(linkname, where)
          const targetDir = target.length > 0 ? await resolveDir(target.slice(0, -1), false) : null
          const targetHost = targetDir === null ? null : join(targetDir, target[target.length - 1])
          const st = targetHost === null ? null : await lstat(targetHost).catch(() => null)
          if (targetHost === null || st === null || !st.isFile()) {
            throw refused(where, `the hard link ${JSON.stringify(name)} points at ${JSON.stringify(linkname)}, which is not a regular file inside the root`, { path: name })
          }
          if (targetHost === host) break
          await removeExisting(host, false)
          await copyFile(targetHost, host, fsConstants.COPYFILE_EXCL)
          await chmod(host, st.mode & 0o1777)
          await utimes(host, st.mtime, st.mtime)
          created.add(host)
          break
        }
        case '3':
        case '4':
          throw refused(where, `${JSON.stringify(name)} is a device node; build roots may not carry device files (the sandbox provides /dev)`, { path: name })
        case '6':
          throw refused(where, `${JSON.stringify(name)} is a FIFO; build roots may not carry special files`, { path: name })
        default:
          throw refused(where, `${JSON.stringify(name)} has tar entry type ${JSON.stringify(h.type)}, which is not supported`, { path: name })
      }
    }
    await reader.drain()
  } catch (err) {
    if (err instanceof QuorateError) throw err
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOSPC' || code === 'EIO' || code === 'EDQUOT') throw err
    throw refused(where, `the layer is not a readable tar${layer.compression === 'gzip' ? '.gz' : ''} (${(err as Error).message})`)
  } finally {
    file.destroy()
    source.destroy()
  }
  state.budget -= bytes
  return { diffId: hash.digest('hex'), bytes }
}

/** Applies the directory modes and times recorded while unpacking (after the last layer). */
export async function finishUnpack (state: UnpackState): Promise<void> {
  // Deepest first, so setting a parent's time is not undone by work inside it.
  const dirs = [...state.dirModes.entries()].sort(([a], [b]) => b.length - a.length)
  for (const [dir, { mode, mtime }] of dirs) {
    const st = await lstat(dir).catch(() => null)
    if (st === null || !st.isDirectory()) continue
    await chmod(dir, mode)
    await utimes(dir, mtime, mtime)
  }
}

/** Mount points the sandbox needs inside a root (made in the cached copy when the image lacks them). */
const MOUNT_DIRS = ['build', 'build/src', 'build/home', 'tmp', 'proc', 'dev', 'etc']
const MOUNT_FILES = ['etc/passwd', 'etc/group', 'etc/hosts', 'etc/resolv.conf', 'etc/gai.conf']

/** Empty directories and files the sandbox mounts over; things of the wrong type are replaced. */
export async function makeMountPoints (rootfs: string): Promise<void> {
  for (const d of MOUNT_DIRS) {
    const p = join(rootfs, d)
    const st = await lstat(p).catch(() => null)
    if (st !== null && st.isDirectory()) continue
    if (st !== null) await rm(p, { recursive: true, force: true })
    await mkdir(p, { mode: 0o755 })
  }
  for (const f of MOUNT_FILES) {
    const p = join(rootfs, f)
    const st = await lstat(p).catch(() => null)
    if (st !== null && st.isFile()) continue
    if (st !== null) await rm(p, { recursive: true, force: true })
    await writeFile(p, '', { mode: 0o644 })
  }
}

/**
 * Every layer in order into `rootfs` (an empty directory), then the final directory modes and
 * the sandbox's mount points; returns each layer's diff_id (hex). Runs in the node's process or
 * in the unprivileged unpack worker (unpack-worker.ts).
 */
export async function unpackLayers (rootfs: string, layers: LayerSource[], cap: number): Promise<string[]> {
  const state: UnpackState = { budget: cap, cap, dirModes: new Map() }
  const diffIds: string[] = []
  for (const layer of layers) diffIds.push((await extractLayer(rootfs, layer, state)).diffId)
  await finishUnpack(state)
  await makeMountPoints(rootfs)
  return diffIds
}

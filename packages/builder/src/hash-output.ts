import { createHash, type Hash } from 'node:crypto'
import {
  closeSync, constants as fsConstants, fstatSync, lstatSync, mkdirSync, openSync, read, readdirSync,
  readlinkSync, readSync, symlinkSync, writeSync, type Stats
} from 'node:fs'
import { lstat, mkdir, readdir } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { Buffer, isUtf8 } from 'node:buffer'
import { QuorateError, canonicalize, type FileListEntry } from '@quorate/core'

export type { FileListEntry }

export interface FileList {
  version: 1
  /** Sorted by the UTF-8 bytes of `path`. The output root directory itself is not listed. */
  files: FileListEntry[]
}

export interface OutputDigest {
  /** Lowercase hex SHA-256 of the output's NAR serialization. */
  narSha256: string
  fileList: FileList
  /**
   * RFC 8785 canonical JSON of `fileList`: the bytes that are stored and whose hash is attested.
   * Absent when they were written to `fileListTo` instead (see fileListPath).
   */
  fileListBytes?: Uint8Array
  /** Where the file list's bytes were written (HashOutputOptions.fileListTo). */
  fileListPath?: string
  fileListSha256: string
  /** The output's top-level regular files (at most 16, else none); a single-file output is itself listed. */
  topLevelFiles: Array<{ name: string, sha256: string }>
  /** Sum of the sizes of all regular files. */
  totalBytes: number
  /** Number of regular files. */
  fileCount: number
}

export interface HashOutputOptions {
  /** Refuse (OUTPUT_INVALID) as soon as the regular files add up to more than this many bytes. */
  maxBytes?: number
  /**
   * Copy the output into this directory during the same walk, so that the copy is exactly
   * what was hashed. It must not exist or be empty. Every file-list path then exists under it
   * (a single-file output is written as `<copyTo>/<basename>`). Files are written 0644 or
   * 0755 (executable), directories 0755.
   */
  copyTo?: string
  /**
   * Write the file list's bytes to this file (created, or truncated) instead of returning them:
   * the list of an output of 500,000 files is about 60 MB that a node need not hold.
   */
  fileListTo?: string
}

/** Top-level regular files become attestation subjects only up to this many (DESIGN.md). */
export const MAX_TOP_LEVEL_SUBJECTS = 16

const READ_SIZE = 1 << 20
const ZEROS = Buffer.alloc(8)
const YIELD_EVERY_MS = 10

/** `str(s)` of the NAR format: u64 little-endian length, the bytes, zero padding to a multiple of 8. */
function str (s: string | Buffer): Buffer {
  const bytes = typeof s === 'string' ? Buffer.from(s, 'utf8') : s
  const pad = (8 - (bytes.length % 8)) % 8
  const out = Buffer.alloc(8 + bytes.length + pad)
  writeLength(out, bytes.length)
  bytes.copy(out, 8)
  return out
}

function writeLength (buf: Buffer, n: number, offset = 0): void {
  buf.writeUInt32LE(n % 0x1_0000_0000, offset)
  buf.writeUInt32LE(Math.floor(n / 0x1_0000_0000), offset + 4)
}

// The fixed parts of the NAR grammar, framed once.
const NAR_MAGIC = str('nix-archive-1')
const OPEN = str('(')
const CLOSE = str(')')
const TYPE = str('type')
const REGULAR_HEADER = Buffer.concat([OPEN, TYPE, str('regular'), str('contents')])
const EXECUTABLE_HEADER = Buffer.concat([OPEN, TYPE, str('regular'), str('executable'), str(''), str('contents')])
const SYMLINK_HEADER = Buffer.concat([OPEN, TYPE, str('symlink'), str('target')])
const DIRECTORY_HEADER = Buffer.concat([OPEN, TYPE, str('directory')])
const ENTRY_HEADER = Buffer.concat([str('entry'), OPEN, str('name')])
const NODE = str('node')

/**
 * One file-list entry as collected during the walk: its path (the sort key) and the entry's
 * canonical JSON, written once here so the list is never canonicalized as one huge value (for
 * 100,000 files that took 200+ MB and stalled the event loop for hundreds of milliseconds).
 */
interface Collected { path: string, entry: FileListEntry }

class OutputWalker {
  readonly nar: Hash = createHash('sha256')
  readonly entries: Collected[] = []
  readonly topLevel: Array<{ name: string, sha256: string }> = []
  totalBytes = 0
  fileCount = 0
  /** Some path holds a character where UTF-16 order and UTF-8 byte order differ (see byPathBytes). */
  nonBmpOrder = false
  private readonly buffers = [Buffer.allocUnsafe(READ_SIZE), Buffer.allocUnsafe(READ_SIZE)]
  private readonly lengthBuf = Buffer.alloc(8)
  private lastYield = performance.now()

  constructor (private readonly root: string, private readonly options: HashOutputOptions & { list: boolean }) {}

  async walkRoot (): Promise<void> {
    const st = await lstatOrExplain(this.root)
    this.nar.update(NAR_MAGIC)
    const name = basename(this.root)
    if (st.isDirectory()) {
      if (this.options.copyTo !== undefined) await makeCopyRoot(this.options.copyTo)
      await this.directory(this.root, null, this.options.copyTo)
      return
    }
    // A single file or symlink is listed (and copied) under its basename.
    if (this.options.copyTo !== undefined) await makeCopyRoot(this.options.copyTo)
    const copy = this.options.copyTo === undefined ? undefined : join(this.options.copyTo, name)
    await this.node(this.root, name, st, copy, true)
  }

  private async node (abs: string, rel: string, st: Stats, copy: string | undefined, topLevel: boolean): Promise<void> {
    if (st.isDirectory()) return await this.directory(abs, rel, copy)
    if (st.isFile()) return await this.file(abs, rel, copy, topLevel)
    if (st.isSymbolicLink()) return await this.symlink(abs, rel, copy)
    throw new QuorateError('OUTPUT_INVALID',
      `${abs} is a ${kindOf(st)}; a build output may hold only regular files, directories and symlinks. Change the build so it leaves no ${kindOf(st)} in the output directory`,
      { path: abs, kind: kindOf(st) })
  }

  private async directory (abs: string, rel: string | null, copy: string | undefined): Promise<void> {
    if (rel !== null) {
      this.collect(rel, { path: rel, type: 'dir' })
      if (copy !== undefined) mkdirSync(copy, { mode: 0o755 })
    }
    this.nar.update(DIRECTORY_HEADER)
    const names = readdirSync(abs, { encoding: 'buffer' })
    names.sort(Buffer.compare)
    for (const nameBytes of names) {
      if (!isUtf8(nameBytes)) {
        throw new QuorateError('OUTPUT_INVALID',
          `${join(abs, showBytes(nameBytes))} has a name that is not valid UTF-8; file lists are JSON, so rename it (or keep it out of the output)`,
          { path: join(abs, showBytes(nameBytes)) })
      }
      const name = nameBytes.toString('utf8')
      const childAbs = join(abs, name)
      const childRel = rel === null ? name : `${rel}/${name}`
      const childCopy = copy === undefined ? undefined : join(copy, name)
      this.nar.update(ENTRY_HEADER)
      this.nar.update(str(nameBytes))
      this.nar.update(NODE)
      await this.node(childAbs, childRel, lstatSync(childAbs), childCopy, rel === null)
      this.nar.update(CLOSE)
      await this.maybeYield()
    }
    this.nar.update(CLOSE)
  }

  private async symlink (abs: string, rel: string, copy: string | undefined): Promise<void> {
    const target = readlinkSync(abs, { encoding: 'buffer' })
    if (!isUtf8(target)) {
      throw new QuorateError('OUTPUT_INVALID',
        `${abs} is a symlink whose target is not valid UTF-8 (${showBytes(target)}); file lists are JSON, so change the target`,
        { path: abs })
    }
    const targetText = target.toString('utf8')
    this.nar.update(SYMLINK_HEADER)
    this.nar.update(str(target))
    this.nar.update(CLOSE)
    this.collect(rel, { path: rel, type: 'symlink', target: targetText })
    if (copy !== undefined) symlinkSync(targetText, copy)
  }

  private async file (abs: string, rel: string, copy: string | undefined, topLevel: boolean): Promise<void> {
    // O_NOFOLLOW and O_NONBLOCK: a path swapped for a symlink or a fifo since lstat neither
    // redirects nor blocks the read; fstat below then tells what was really opened.
    const fd = openSync(abs, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK)
    let out: number | undefined
    try {
      const st = fstatSync(fd)
      if (!st.isFile()) throw changedWhileHashing(abs)
      const size = st.size
      const executable = (st.mode & 0o100) !== 0
      if (this.options.maxBytes !== undefined && this.totalBytes + size > this.options.maxBytes) {
        throw new QuorateError('OUTPUT_INVALID',
          `the output is larger than the limit of ${this.options.maxBytes} bytes (reached at ${abs}); make the output smaller or raise maxOutputBytes in the recipe`,
          { path: abs, limit: this.options.maxBytes })
      }
      this.totalBytes += size
      this.fileCount++
      if (copy !== undefined) out = openSync(copy, 'wx', executable ? 0o755 : 0o644)
      const fileHash = this.options.list ? createHash('sha256') : null
      this.nar.update(executable ? EXECUTABLE_HEADER : REGULAR_HEADER)
      writeLength(this.lengthBuf, size)
      this.nar.update(this.lengthBuf)
      const consume = (chunk: Buffer): void => {
        this.nar.update(chunk)
        fileHash?.update(chunk)
        if (out !== undefined) writeAllSync(out, chunk)
      }
      if (size <= READ_SIZE) {
        // Small files dominate most outputs: synchronous calls cost microseconds where each
        // promise round trip through libuv's pool costs tens of them.
        let pos = 0
        while (pos < size) {
          const n = readSync(fd, this.buffers[0], 0, size - pos, pos)
          if (n === 0) throw changedWhileHashing(abs)
          consume(this.buffers[0].subarray(0, n))
          pos += n
        }
      } else {
        // Large files: two buffers, the next read runs in libuv's pool while this chunk is hashed.
        let which = 0
        let pos = 0
        let pending: Promise<number> | null = readAt(fd, this.buffers[0], Math.min(READ_SIZE, size), 0)
        while (pending !== null) {
          const n: number = await pending
          if (n === 0) throw changedWhileHashing(abs)
          const chunk = this.buffers[which].subarray(0, n)
          pos += n
          pending = pos < size ? readAt(fd, this.buffers[1 - which], Math.min(READ_SIZE, size - pos), pos) : null
          try {
            consume(chunk)
          } catch (err) {
            // Let the read in flight settle before its buffer and descriptor go away.
            await pending?.catch(() => {})
            throw err
          }
          which = 1 - which
        }
      }
      const pad = (8 - (size % 8)) % 8
      if (pad > 0) this.nar.update(ZEROS.subarray(0, pad))
      this.nar.update(CLOSE)
      if (fileHash !== null) {
        const sha256 = fileHash.digest('hex')
        const entry: FileListEntry = { path: rel, type: 'file', size, sha256 }
        if (executable) entry.executable = true
        this.collect(rel, entry)
        if (topLevel) this.topLevel.push({ name: rel, sha256 })
      }
    } finally {
      if (out !== undefined) closeSync(out)
      closeSync(fd)
    }
  }

  /** The walk is mostly synchronous; give the event loop a turn every few milliseconds. */
  async maybeYield (): Promise<void> {
    const now = performance.now()
    if (now - this.lastYield < YIELD_EVERY_MS) return
    await new Promise(resolve => setImmediate(resolve))
    this.lastYield = performance.now()
  }

  private collect (rel: string, entry: FileListEntry): void {
    if (!this.options.list) return
    this.entries.push({ path: rel, entry })
    if (!this.nonBmpOrder && /[\ud800-\uffff]/.test(rel)) this.nonBmpOrder = true
  }
}

/**
 * Hashes a build output in one walk: the NAR SHA-256, the file list with each file's
 * SHA-256, and the top-level files that become attestation subjects. Symlinks are never
 * followed; names are sorted by their bytes; sockets, fifos, devices and non-UTF-8 names
 * are refused with OUTPUT_INVALID.
 */
export async function hashOutput (path: string, options: HashOutputOptions = {}): Promise<OutputDigest> {
  const walker = new OutputWalker(path, { ...options, list: true })
  await walkExplained(walker)
  const entries = walker.entries
  entries.sort(walker.nonBmpOrder ? byPathBytes : byPathUnits)
  await walker.maybeYield()
  const fileList: FileList = { version: 1, files: entries.map(e => e.entry) }
  const { bytes: fileListBytes, sha256: fileListSha256 } = await writeFileList(entries, walker, options.fileListTo)
  return {
    narSha256: walker.nar.digest('hex'),
    fileList,
    ...(fileListBytes !== undefined ? { fileListBytes } : { fileListPath: options.fileListTo }),
    fileListSha256,
    topLevelFiles: walker.topLevel.length <= MAX_TOP_LEVEL_SUBJECTS ? walker.topLevel : [],
    totalBytes: walker.totalBytes,
    fileCount: walker.fileCount
  }
}

/**
 * File-list paths sort by their UTF-8 bytes. JavaScript compares strings by UTF-16 code units,
 * which agrees with byte order except between a surrogate pair (a character above U+FFFF) and a
 * character from U+E000 to U+FFFF; only outputs with such names take the slow comparison.
 */
function byPathUnits (a: Collected, b: Collected): number {
  return a.path < b.path ? -1 : a.path > b.path ? 1 : 0
}

function byPathBytes (a: Collected, b: Collected): number {
  return Buffer.compare(Buffer.from(a.path, 'utf8'), Buffer.from(b.path, 'utf8'))
}

/** Bytes of the file list written per piece: each piece is hashed and the event loop gets a turn in between. */
const FILE_LIST_PIECE = 256 * 1024

/**
 * Writes the file list's canonical JSON (`{"files":[…],"version":1}`, RFC 8785: keys sorted), each
 * entry canonicalized on its own, piece by piece, hashing as it goes: the same bytes as
 * canonicalizing the whole list at once, without its hundreds of megabytes of intermediate parts.
 * With `to`, the pieces go to that file and are not kept.
 */
async function writeFileList (entries: Collected[], walker: OutputWalker, to?: string): Promise<{ bytes?: Uint8Array, sha256: string }> {
  const hash = createHash('sha256')
  const pieces: Buffer[] = []
  const fd = to === undefined ? undefined : openSync(to, 'w', 0o644)
  try {
    let text = '{"files":['
    const flush = (): void => {
      const piece = Buffer.from(text, 'utf8')
      hash.update(piece)
      if (fd !== undefined) writeAllSync(fd, piece)
      else pieces.push(piece)
      text = ''
    }
    for (let i = 0; i < entries.length; i++) {
      const json = canonicalize((entries[i] as Collected).entry)
      text += i === 0 ? json : `,${json}`
      if (text.length >= FILE_LIST_PIECE) {
        flush()
        await walker.maybeYield()
      }
    }
    text += '],"version":1}'
    flush()
  } finally {
    if (fd !== undefined) closeSync(fd)
  }
  if (fd !== undefined) return { sha256: hash.digest('hex') }
  const bytes = pieces.length === 1 ? pieces[0] as Buffer : Buffer.concat(pieces)
  return { bytes: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), sha256: hash.digest('hex') }
}

/** Only the NAR SHA-256 (hex) of a path: what `nix-store --dump PATH | sha256sum` prints. */
export async function hashNar (path: string): Promise<string> {
  const walker = new OutputWalker(path, { list: false })
  await walkExplained(walker)
  return walker.nar.digest('hex')
}

/** Unreadable parts of an output are the build's doing: report them as OUTPUT_INVALID, naming the path. */
async function walkExplained (walker: OutputWalker): Promise<void> {
  try {
    await walker.walkRoot()
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    if (e.code === 'EACCES' || e.code === 'EPERM' || e.code === 'ELOOP') {
      throw new QuorateError('OUTPUT_INVALID',
        `${e.path ?? 'part of the output'} cannot be read (${e.code}); make the build leave its output readable`,
        { path: e.path, errno: e.code }, { cause: err })
    }
    throw err
  }
}

async function lstatOrExplain (path: string): Promise<Stats> {
  try {
    return await lstat(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new QuorateError('OUTPUT_INVALID', `${path} does not exist; give the path of a file or directory to hash`, { path }, { cause: err })
    }
    throw err
  }
}

async function makeCopyRoot (dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o755 })
  const existing = await readdir(dir)
  if (existing.length > 0) {
    throw new QuorateError('OUTPUT_INVALID', `${dir} is not empty; the output copy needs a new or empty directory`, { path: dir })
  }
}

function readAt (fd: number, buffer: Buffer, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    read(fd, buffer, 0, length, position, (err, bytesRead) => { if (err !== null) reject(err); else resolve(bytesRead) })
  })
}

function writeAllSync (fd: number, chunk: Buffer): void {
  let off = 0
  while (off < chunk.length) off += writeSync(fd, chunk, off, chunk.length - off)
}

function changedWhileHashing (path: string): QuorateError {
  return new QuorateError('OUTPUT_INVALID',
    `${path} changed while it was being hashed; make sure no process is still writing to the output`,
    { path })
}

function kindOf (st: Stats): string {
  if (st.isFIFO()) return 'fifo'
  if (st.isSocket()) return 'socket'
  if (st.isCharacterDevice()) return 'character device'
  if (st.isBlockDevice()) return 'block device'
  return 'special file'
}

/** A name for error messages: printable ASCII and valid UTF-8 as is, other bytes as \xNN. */
function showBytes (bytes: Buffer): string {
  let out = ''
  for (const b of bytes) {
    out += b >= 0x20 && b < 0x7f && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`
  }
  return out
}

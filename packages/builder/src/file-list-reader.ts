import { createReadStream } from 'node:fs'
import { QuorateError } from '@quorate/core'

/**
 * Reads a file list's entries one at a time from its canonical JSON (`{"files":[{…},{…}],"version":1}`,
 * RFC 8785: the bytes every builder writes and signs by digest), so a list of 500,000 files (about
 * 60 MB) is never one string nor one parsed document in memory: each entry is parsed on its own.
 * Anything else (another layout, whitespace, a non-object entry, an entry over 64 KiB, bad UTF-8
 * or JSON) is refused with OUTPUT_INVALID naming `what`. Entries are returned as parsed, unchecked:
 * the caller validates their fields.
 */
export class FileListScanner {
  private stage: 'head' | 'first' | 'comma' | 'entry' | 'between' | 'tail' = 'head'
  private head = ''
  private tail = ''
  private pieces: Uint8Array[] = []
  private pieceBytes = 0
  private depth = 0
  private inString = false
  private escaped = false
  /** Entries read so far. */
  count = 0

  constructor (private readonly what: string) {}

  private bad (why: string): never {
    throw new QuorateError('OUTPUT_INVALID', `${this.what}: ${why}; a file list is the canonical JSON {"files":[…],"version":1}`, { entry: this.count })
  }

  /** Feeds the next bytes; returns the entries they complete. */
  push (chunk: Uint8Array): Array<Record<string, unknown>> {
    const out: Array<Record<string, unknown>> = []
    let i = 0
    const n = chunk.byteLength
    while (i < n) {
      if (this.stage === 'head') {
        const want = HEAD.length - this.head.length
        this.head += String.fromCharCode(...chunk.subarray(i, i + want))
        i += Math.min(want, n - i)
        if (!HEAD.startsWith(this.head)) this.bad('it does not begin with {"files":[')
        if (this.head.length === HEAD.length) this.stage = 'first'
        continue
      }
      if (this.stage === 'tail') {
        this.tail += String.fromCharCode(...chunk.subarray(i, Math.min(n, i + TAIL.length + 1)))
        i = n
        if (!TAIL.startsWith(this.tail)) this.bad('it does not end with ],"version":1}')
        continue
      }
      if (this.stage !== 'entry') {
        // 'first': an entry or the end of an empty list; 'comma': an entry; 'between': "," or the end
        const c = chunk[i] as number
        if (c === 0x7b && this.stage !== 'between') { this.stage = 'entry'; this.depth = 0; continue } // {
        if (c === 0x5d && this.stage !== 'comma') { this.stage = 'tail'; i++; continue } // ]
        if (c === 0x2c && this.stage === 'between') { this.stage = 'comma'; i++; continue } // ,
        this.bad(`unexpected ${JSON.stringify(String.fromCharCode(c))} ${this.stage === 'comma' ? 'after ","' : 'between entries'}`)
      }
      // stage 'entry': find where this object ends (strings may hold any brace)
      const start = i
      let end = -1
      for (; i < n; i++) {
        const c = chunk[i] as number
        if (this.inString) {
          if (this.escaped) this.escaped = false
          else if (c === 0x5c) this.escaped = true
          else if (c === 0x22) this.inString = false
        } else if (c === 0x22) {
          this.inString = true
        } else if (c === 0x7b || c === 0x5b) {
          this.depth++
        } else if (c === 0x7d || c === 0x5d) {
          this.depth--
          if (this.depth === 0) { end = i + 1; i++; break }
        }
      }
      const piece = chunk.subarray(start, end < 0 ? n : end)
      this.pieceBytes += piece.byteLength
      if (this.pieceBytes > MAX_ENTRY_BYTES) this.bad(`entry ${this.count} is over ${MAX_ENTRY_BYTES} bytes`)
      this.pieces.push(piece.slice())
      if (end >= 0) {
        out.push(this.parseEntry())
        this.stage = 'between'
      }
    }
    return out
  }

  /** Call after the last bytes: refuses a list that stopped early. */
  end (): void {
    if (this.stage !== 'tail' || this.tail !== TAIL) this.bad('it ends early')
  }

  private parseEntry (): Record<string, unknown> {
    const bytes = this.pieces.length === 1 ? this.pieces[0] as Uint8Array : Buffer.concat(this.pieces)
    this.pieces = []
    this.pieceBytes = 0
    let value: unknown
    try {
      value = JSON.parse(utf8.decode(bytes))
    } catch {
      this.bad(`entry ${this.count} is not UTF-8 JSON`)
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) this.bad(`entry ${this.count} is not a JSON object`)
    this.count++
    return value as Record<string, unknown>
  }
}

const HEAD = '{"files":['
const TAIL = ',"version":1}'
/** An entry holds a path and a symlink target of at most 4096 characters each, a size and a digest. */
const MAX_ENTRY_BYTES = 64 * 1024
const utf8 = new TextDecoder('utf-8', { fatal: true })

/** The entries of the file list stored at `path`, read 1 MiB at a time (see FileListScanner). */
export async function * readFileListEntries (path: string, what = path): AsyncGenerator<Record<string, unknown>> {
  const scanner = new FileListScanner(what)
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) {
    yield * scanner.push(chunk as Buffer)
  }
  scanner.end()
}

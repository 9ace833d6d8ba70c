import { createHash, type Hash } from 'node:crypto'

/** A build's merged stdout+stderr: its first and last bytes, and the hash of all of it. */
export interface CapturedLog {
  /** The first maxLogBytes/2 bytes (decoded as UTF-8; a character cut in two shows as U+FFFD). */
  head: string
  /** The last maxLogBytes/2 bytes; it overlaps `head` when the log is shorter than maxLogBytes. */
  tail: string
  totalBytes: number
  /** Lowercase hex SHA-256 of the full stream, including the bytes dropped between head and tail. */
  sha256: string
  /** Whether `kept` is the whole stream (then its SHA-256 is `sha256`). */
  complete: boolean
  /**
   * What is kept of the stream, byte for byte: all of it when `complete`, else its head, a line
   * saying how many bytes were left out, and its tail.
   */
  kept: Uint8Array
}

/**
 * Keeps a bounded head and tail of a byte stream and hashes all of it. Memory grows with the
 * log up to about maxLogBytes (plus one chunk), never more.
 */
export class LogCapture {
  private readonly half: number
  private readonly headChunks: Buffer[] = []
  private headLen = 0
  private readonly tailChunks: Buffer[] = []
  private tailLen = 0
  private total = 0
  private readonly hash: Hash = createHash('sha256')

  constructor (maxLogBytes: number) {
    this.half = Math.max(1, Math.floor(maxLogBytes / 2))
  }

  push (chunk: Buffer | string): void {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk
    if (bytes.length === 0) return
    this.hash.update(bytes)
    this.total += bytes.length
    if (this.headLen < this.half) {
      const part = keep(bytes.subarray(0, this.half - this.headLen), bytes)
      this.headChunks.push(part)
      this.headLen += part.length
    }
    const last = bytes.length > this.half ? keep(bytes.subarray(bytes.length - this.half), bytes) : bytes
    this.tailChunks.push(last)
    this.tailLen += last.length
    // Drop whole chunks from the front while the rest still holds `half` bytes.
    while (this.tailLen - this.tailChunks[0].length >= this.half) {
      this.tailLen -= (this.tailChunks.shift() as Buffer).length
    }
  }

  /** Bytes seen so far. */
  get totalBytes (): number {
    return this.total
  }

  result (): CapturedLog {
    const all = Buffer.concat(this.tailChunks)
    const tail = all.subarray(Math.max(0, all.length - this.half))
    const head = Buffer.concat(this.headChunks)
    const complete = this.total <= head.length + tail.length
    const kept = complete
      ? Buffer.concat([head, tail.subarray(tail.length - (this.total - head.length))])
      : Buffer.concat([head, Buffer.from(`\n[quorate: ${this.total - head.length - tail.length} bytes of the log left out here; the recipe's maxLogBytes keeps the first and last ${this.half} bytes]\n`), tail])
    return {
      head: head.toString('utf8'),
      tail: tail.toString('utf8'),
      totalBytes: this.total,
      sha256: this.hash.copy().digest('hex'),
      complete,
      kept
    }
  }
}

/** A slice that does not pin a much larger chunk in memory. */
function keep (slice: Buffer, whole: Buffer): Buffer {
  return slice.length < whole.length ? Buffer.from(slice) : slice
}

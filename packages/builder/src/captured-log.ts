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

  result (): CapturedLog {
    const tail = Buffer.concat(this.tailChunks)
    return {
      head: Buffer.concat(this.headChunks).toString('utf8'),
      tail: tail.subarray(Math.max(0, tail.length - this.half)).toString('utf8'),
      totalBytes: this.total,
      sha256: this.hash.copy().digest('hex')
    }
  }
}

/** A slice that does not pin a much larger chunk in memory. */
function keep (slice: Buffer, whole: Buffer): Buffer {
  return slice.length < whole.length ? Buffer.from(slice) : slice
}

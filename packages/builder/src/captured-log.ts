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

/** Keeps a bounded head and tail of a byte stream and hashes all of it. */
export class LogCapture {
  private readonly half: number
  private readonly headBuf: Buffer
  private headLen = 0
  private readonly ring: Buffer
  private ringStart = 0
  private ringLen = 0
  private total = 0
  private readonly hash: Hash = createHash('sha256')

  constructor (maxLogBytes: number) {
    this.half = Math.max(1, Math.floor(maxLogBytes / 2))
    this.headBuf = Buffer.alloc(this.half)
    this.ring = Buffer.alloc(this.half)
  }

  push (chunk: Buffer | string): void {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk
    this.hash.update(bytes)
    this.total += bytes.length
    if (this.headLen < this.half) {
      const n = Math.min(this.half - this.headLen, bytes.length)
      bytes.copy(this.headBuf, this.headLen, 0, n)
      this.headLen += n
    }
    const rest = bytes
    if (rest.length === 0) return
    if (rest.length >= this.half) {
      rest.copy(this.ring, 0, rest.length - this.half)
      this.ringStart = 0
      this.ringLen = this.half
      return
    }
    // Append to the ring, overwriting its oldest bytes.
    let write = (this.ringStart + this.ringLen) % this.half
    for (let off = 0; off < rest.length;) {
      const n = Math.min(rest.length - off, this.half - write)
      rest.copy(this.ring, write, off, off + n)
      off += n
      write = (write + n) % this.half
    }
    const len = this.ringLen + rest.length
    if (len > this.half) {
      this.ringStart = (this.ringStart + len - this.half) % this.half
      this.ringLen = this.half
    } else {
      this.ringLen = len
    }
  }

  result (): CapturedLog {
    const end = this.ringStart + this.ringLen
    const tail = end <= this.half
      ? this.ring.subarray(this.ringStart, end)
      : Buffer.concat([this.ring.subarray(this.ringStart), this.ring.subarray(0, end - this.half)])
    return {
      head: this.headBuf.subarray(0, this.headLen).toString('utf8'),
      tail: tail.toString('utf8'),
      totalBytes: this.total,
      sha256: this.hash.copy().digest('hex')
    }
  }
}

import { QuorateError } from '@quorate/core'

/**
 * Length-prefixed frames: an unsigned LEB128 varint byte length, then the payload (the wire
 * format of it-length-prefixed). Written by hand so that the reader can pause the stream
 * (real backpressure) and refuse an oversized frame as soon as its header arrives, before
 * buffering any of it.
 */

export const DEFAULT_MAX_FRAME_BYTES = 128 * 1024

export function encodeFrame (payload: Uint8Array): Uint8Array {
  const header: number[] = []
  let n = payload.byteLength
  do {
    let byte = n & 0x7f
    n = Math.floor(n / 128)
    if (n > 0) byte |= 0x80
    header.push(byte)
  } while (n > 0)
  const out = new Uint8Array(header.length + payload.byteLength)
  out.set(header, 0)
  out.set(payload, header.length)
  return out
}

/** Incremental decoder: push chunks as they arrive, get back the complete frames. */
export class FrameDecoder {
  private readonly maxFrameBytes: number
  private chunks: Uint8Array[] = []
  private total = 0
  private expected: number | undefined

  constructor (maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES) {
    this.maxFrameBytes = maxFrameBytes
  }

  /** Bytes received but not yet returned as frames. */
  get bufferedBytes (): number {
    return this.total
  }

  /** True when a frame has started but not finished (a stream ending now is truncated). */
  get hasPartial (): boolean {
    return this.total > 0 || this.expected !== undefined
  }

  /** Throws QuorateError('NETWORK_FAILED') for an oversized frame or a malformed length. */
  push (chunk: Uint8Array): Uint8Array[] {
    if (chunk.byteLength > 0) {
      this.chunks.push(chunk)
      this.total += chunk.byteLength
    }
    const frames: Uint8Array[] = []
    for (;;) {
      if (this.expected === undefined) {
        const header = this.readLength()
        if (header === undefined) break
        this.expected = header
      }
      if (this.total < this.expected) break
      frames.push(this.take(this.expected))
      this.expected = undefined
    }
    return frames
  }

  private readLength (): number | undefined {
    let value = 0
    let scale = 1
    let index = 0
    for (const chunk of this.chunks) {
      for (const byte of chunk) {
        value += (byte & 0x7f) * scale
        index++
        if (value > this.maxFrameBytes) {
          throw new QuorateError('NETWORK_FAILED',
            `frame larger than ${this.maxFrameBytes} bytes announced; the peer is misbehaving or runs an incompatible version`,
            { maxFrameBytes: this.maxFrameBytes, announced: value, violation: 'oversized' })
        }
        if ((byte & 0x80) === 0) {
          this.take(index)
          return value
        }
        scale *= 128
        if (index >= 8) {
          throw new QuorateError('NETWORK_FAILED', 'frame length prefix is not a valid varint', { bytes: index, violation: 'oversized' })
        }
      }
    }
    return undefined
  }

  /** Remove and return the first n buffered bytes (n <= total). */
  private take (n: number): Uint8Array {
    const first = this.chunks[0]
    if (first !== undefined && first.byteLength >= n) {
      const out = first.subarray(0, n)
      if (first.byteLength === n) this.chunks.shift()
      else this.chunks[0] = first.subarray(n)
      this.total -= n
      return out
    }
    const out = new Uint8Array(n)
    let filled = 0
    let used = 0 // whole chunks consumed; removed with one splice (shift() per chunk is quadratic)
    while (filled < n) {
      const chunk = this.chunks[used] as Uint8Array
      const part = Math.min(n - filled, chunk.byteLength)
      out.set(chunk.subarray(0, part), filled)
      filled += part
      if (part === chunk.byteLength) used++
      else this.chunks[used] = chunk.subarray(part)
    }
    this.chunks.splice(0, used)
    this.total -= n
    return out
  }
}

import type { Stream } from '@libp2p/interface'
import { QuorateError } from '@quorate/core'
import { FrameReader, FrameWriter } from './stream-io.js'
import type { BlobReader, BlobSource } from './types.js'

/**
 * Content-addressed blobs (file lists, outputs) by SHA-256, one request per stream, read in ranges
 * so that neither side ever holds a whole large blob:
 *
 *   client: {"type":"get","sha256":"<64 lowercase hex>","offset":O,"length":L}    then closes its writable end
 *   server: {"type":"blob","size":N,"offset":O,"length":M}  <raw data frames, each ≤ 64 KiB, M bytes in all>  {"type":"end"}
 *       or: {"type":"not-found"} {"type":"end"}
 *       or: {"type":"too-large","size":N} {"type":"end"}               (over the server's cap)
 *   then the server closes. Frames are length-prefixed like the sync protocol's. N is the whole
 *   blob's size; M = min(L, the server's range size, N - O) and is more than 0 unless O = N = 0.
 *
 * A request without "offset" (releases before ranges) asks for the whole blob: the server answers
 * `{"type":"blob","size":N}` and N bytes, for blobs up to LEGACY_WHOLE_BLOB_BYTES only. A client
 * reading such an answer takes it as the range from 0 to N, so old and new peers understand each other.
 *
 * The client never trusts the bytes: it checks the size against its own cap as soon as the header
 * arrives, every range against what it asked, and the SHA-256 of the whole before keeping it
 * (blob-fetcher.ts).
 */
export const BLOB_PROTOCOL = '/quorate/blob/1.0.0'
/**
 * Largest blob either side sends or takes by default. Blobs travel in ranges of 64 KiB frames and
 * are written to a file as they arrive, so the cap bounds only disk and time, not memory: 1 GiB
 * holds the file list of an output of several million files (500,000 small files make a list of
 * about 60 MB, over the former 64 MiB whole-blob cap: issue 14 item 10).
 */
export const DEFAULT_MAX_BLOB_BYTES = 1024 * 1024 * 1024
/** Largest blob sent whole to a client that does not ask by range (releases before ranges). */
export const LEGACY_WHOLE_BLOB_BYTES = 64 * 1024 * 1024
/** Bytes one range request asks for by default (the server may send fewer). */
export const DEFAULT_BLOB_RANGE_BYTES = 4 * 1024 * 1024
/** Most bytes a server sends for one range request, whatever the client asked. */
export const MAX_BLOB_RANGE_BYTES = 16 * 1024 * 1024
const CHUNK_BYTES = 64 * 1024
/** Largest frame either side accepts: a data chunk, or a small JSON control frame. */
const MAX_FRAME_BYTES = CHUNK_BYTES + 1024
const SHA256_PATTERN = /^[0-9a-f]{64}$/

export function isSha256 (value: unknown): value is string {
  return typeof value === 'string' && SHA256_PATTERN.test(value)
}

const utf8 = new TextDecoder('utf-8', { fatal: true })
const json = (value: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(value))
const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0

export function violation (message: string, kind: 'malformed' | 'truncated' | 'oversized' | 'bad-blob', fields: Record<string, unknown> = {}): QuorateError {
  return new QuorateError('NETWORK_FAILED', `blob protocol: ${message}`, { violation: kind, ...fields })
}

function parseControl (bytes: Uint8Array | undefined, what: string): Record<string, unknown> {
  if (bytes === undefined) throw violation(`stream ended before ${what}`, 'truncated')
  let value: unknown
  try {
    value = JSON.parse(utf8.decode(bytes))
  } catch {
    throw violation(`${what} is not UTF-8 JSON`, 'malformed')
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw violation(`${what} is not a JSON object`, 'malformed')
  return value as Record<string, unknown>
}

async function expectEnd (reader: FrameReader): Promise<void> {
  const end = parseControl(await reader.next(), 'the end frame')
  if (end.type !== 'end') throw violation(`expected the end frame, got ${JSON.stringify(end.type)}`, 'malformed')
}

/** A blob held in memory, read by range (a BlobSource's `get`, tests, small blobs). */
export function bytesReader (bytes: Uint8Array): BlobReader {
  return { size: bytes.byteLength, read: async (offset, length) => bytes.subarray(offset, offset + length), close: async () => {} }
}

async function openFrom (source: BlobSource, sha256: string): Promise<BlobReader | undefined> {
  if (source.open !== undefined) return await source.open(sha256)
  const bytes = await source.get?.(sha256)
  return bytes === undefined ? undefined : bytesReader(bytes)
}

/** Serve one request on an inbound stream. Throws (after aborting the stream) on a bad request. */
export async function serveBlobRequest (stream: Stream, source: BlobSource, maxBlobBytes: number): Promise<{ sha256: string, found: boolean, bytes: number }> {
  const reader = new FrameReader(stream, 1024)
  let blob: BlobReader | undefined
  try {
    const request = parseControl(await reader.next(), 'the request')
    if (request.type !== 'get' || !isSha256(request.sha256)) throw violation('the request must be {"type":"get","sha256":"<64 lowercase hex>","offset":O,"length":L}', 'malformed')
    const ranged = request.offset !== undefined
    if (ranged && (!isCount(request.offset) || !isCount(request.length) || request.length === 0)) throw violation('"offset" must be an integer ≥ 0 and "length" an integer ≥ 1', 'malformed')
    const sha256 = request.sha256
    const writer = new FrameWriter(stream)
    blob = await openFrom(source, sha256)
    let sent = 0
    if (blob === undefined) {
      await writer.write(json({ type: 'not-found' }))
    } else if (blob.size > maxBlobBytes || (!ranged && blob.size > LEGACY_WHOLE_BLOB_BYTES)) {
      await writer.write(json({ type: 'too-large', size: blob.size }))
    } else {
      const offset = ranged ? request.offset as number : 0
      if (offset > blob.size) throw violation(`offset ${offset} is past the end of the ${blob.size}-byte blob`, 'malformed')
      const length = ranged ? Math.min(request.length as number, MAX_BLOB_RANGE_BYTES, blob.size - offset) : blob.size
      await writer.write(json(ranged ? { type: 'blob', size: blob.size, offset, length } : { type: 'blob', size: blob.size }))
      // Read piece by piece (1 MiB) and send as 64 KiB frames: a range is never held whole either.
      while (sent < length) {
        const piece = await blob.read(offset + sent, Math.min(16 * CHUNK_BYTES, length - sent))
        if (piece.byteLength === 0) throw new QuorateError('NETWORK_FAILED', `blob ${sha256} ended early (it changed while being served)`, { sha256 })
        for (let at = 0; at < piece.byteLength; at += CHUNK_BYTES) await writer.write(piece.subarray(at, at + CHUNK_BYTES))
        sent += piece.byteLength
      }
    }
    await writer.write(json({ type: 'end' }))
    await writer.flush()
    await stream.close()
    return { sha256, found: sent > 0 || blob?.size === 0, bytes: sent }
  } catch (err) {
    stream.abort(err instanceof Error ? err : new Error(String(err)))
    throw err
  } finally {
    reader.dispose()
    await blob?.close().catch(() => {})
  }
}

export type BlobRangeAnswer =
  | { status: 'found', size: number, offset: number, length: number }
  | { status: 'not-found' }
  | { status: 'too-large', size: number }

/**
 * Asks one peer for one range of a blob on an open outbound stream, handing each data chunk to
 * `onData` as it arrives (in order; the chunk may be reused after onData returns). Verifies the
 * answer's size against `maxBlobBytes` (and `expectedSize` when the caller knows it) and the
 * range against what was asked; throws a QuorateError with `fields.violation` when the peer
 * misbehaved. The blob's SHA-256 is the caller's to check, over all ranges.
 */
export async function requestBlobRange (
  stream: Stream, sha256: string, range: { offset: number, length: number },
  limits: { maxBlobBytes: number, expectedSize?: number }, onData: (chunk: Uint8Array) => void | Promise<void>
): Promise<BlobRangeAnswer> {
  const reader = new FrameReader(stream, MAX_FRAME_BYTES)
  try {
    const writer = new FrameWriter(stream)
    await writer.write(json({ type: 'get', sha256, offset: range.offset, length: range.length }))
    await writer.flush()
    await stream.close() // our writable end; the answer still arrives
    const header = parseControl(await reader.next(), 'the answer')
    let answer: BlobRangeAnswer
    if (header.type === 'not-found') {
      answer = { status: 'not-found' }
    } else if (header.type === 'too-large') {
      answer = { status: 'too-large', size: typeof header.size === 'number' ? header.size : -1 }
    } else if (header.type === 'blob') {
      const size = header.size
      if (!isCount(size)) throw violation('"size" must be a non-negative integer', 'malformed')
      if (size > limits.maxBlobBytes) return { status: 'too-large', size }
      if (limits.expectedSize !== undefined && size !== limits.expectedSize) throw violation(`the blob is announced as ${size} bytes, not the expected ${limits.expectedSize}`, 'bad-blob')
      let offset = 0
      let length = size // an answer without "offset" (a release before ranges) is the whole blob
      if (header.offset !== undefined) {
        offset = header.offset as number
        length = header.length as number
        if (!isCount(offset) || !isCount(length)) throw violation('"offset" and "length" must be non-negative integers', 'malformed')
        if (offset !== range.offset) throw violation(`answered offset ${offset}, not the requested ${range.offset}`, 'malformed')
        if (length > range.length || offset + length > size || (length === 0 && offset < size)) throw violation(`a range of ${length} bytes at ${offset} does not answer ${range.length} bytes at ${range.offset} of ${size}`, 'malformed')
      } else if (range.offset !== 0) {
        throw violation('answered the whole blob to a request for a later range', 'malformed')
      }
      // Memory follows what the peer really sends, one frame at a time, never the size it announced.
      let filled = 0
      while (filled < length) {
        const chunk = await reader.next()
        if (chunk === undefined) throw violation(`stream ended after ${filled} of ${length} bytes`, 'truncated')
        if (chunk.byteLength > length - filled) throw violation(`more data than the announced ${length} bytes`, 'malformed')
        await onData(chunk)
        filled += chunk.byteLength
      }
      answer = { status: 'found', size, offset, length }
    } else {
      throw violation(`unknown answer type ${JSON.stringify(header.type)}`, 'malformed')
    }
    await expectEnd(reader)
    return answer
  } finally {
    reader.dispose()
    if (stream.status === 'open' || stream.status === 'closing') stream.abort(new Error('blob request finished'))
  }
}

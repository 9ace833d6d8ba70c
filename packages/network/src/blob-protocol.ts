import { createHash } from 'node:crypto'
import type { Stream } from '@libp2p/interface'
import { QuorateError } from '@quorate/core'
import { FrameReader, FrameWriter } from './stream-io.js'
import type { BlobSource } from './types.js'

/**
 * Content-addressed blobs (file lists, outputs) by SHA-256, one request per stream:
 *
 *   client: {"type":"get","sha256":"<64 lowercase hex>"}            then closes its writable end
 *   server: {"type":"blob","size":N}  <raw data frames, each ≤ 64 KiB, N bytes in all>  {"type":"end"}
 *       or: {"type":"not-found"} {"type":"end"}
 *       or: {"type":"too-large","size":N} {"type":"end"}               (over the server's cap)
 *   then the server closes. Frames are length-prefixed like the sync protocol's.
 *
 * The client never trusts the bytes: it checks the size against its own cap as soon as the
 * header arrives and the SHA-256 before returning them.
 */
export const BLOB_PROTOCOL = '/quorate/blob/1.0.0'
/**
 * Largest blob either side sends or takes. Blobs travel as 64 KiB data frames, so the cap bounds
 * only the whole: 64 MiB holds the file list of an output of about 500,000 files (100,000 small
 * files make a 12 MB list, which the former 8 MiB cap kept peers from fetching: issue 14 item 10).
 */
export const DEFAULT_MAX_BLOB_BYTES = 64 * 1024 * 1024
const CHUNK_BYTES = 64 * 1024
/** Largest frame either side accepts: a data chunk, or a small JSON control frame. */
const MAX_FRAME_BYTES = CHUNK_BYTES + 1024
const SHA256_PATTERN = /^[0-9a-f]{64}$/

export function isSha256 (value: unknown): value is string {
  return typeof value === 'string' && SHA256_PATTERN.test(value)
}

const utf8 = new TextDecoder('utf-8', { fatal: true })
const json = (value: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(value))

function violation (message: string, kind: 'malformed' | 'truncated' | 'oversized' | 'bad-blob', fields: Record<string, unknown> = {}): QuorateError {
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

/** Serve one request on an inbound stream. Throws (after aborting the stream) on a bad request. */
export async function serveBlobRequest (stream: Stream, source: BlobSource, maxBlobBytes: number): Promise<{ sha256: string, found: boolean, bytes: number }> {
  const reader = new FrameReader(stream, 1024)
  try {
    const request = parseControl(await reader.next(), 'the request')
    if (request.type !== 'get' || !isSha256(request.sha256)) throw violation('the request must be {"type":"get","sha256":"<64 lowercase hex>"}', 'malformed')
    const sha256 = request.sha256
    const writer = new FrameWriter(stream)
    const blob = await source.get(sha256)
    let found = false
    if (blob === undefined) {
      await writer.write(json({ type: 'not-found' }))
    } else if (blob.byteLength > maxBlobBytes) {
      await writer.write(json({ type: 'too-large', size: blob.byteLength }))
    } else {
      found = true
      await writer.write(json({ type: 'blob', size: blob.byteLength }))
      for (let at = 0; at < blob.byteLength; at += CHUNK_BYTES) await writer.write(blob.subarray(at, at + CHUNK_BYTES))
    }
    await writer.write(json({ type: 'end' }))
    await writer.flush()
    await stream.close()
    return { sha256, found, bytes: found ? (blob?.byteLength ?? 0) : 0 }
  } catch (err) {
    stream.abort(err instanceof Error ? err : new Error(String(err)))
    throw err
  } finally {
    reader.dispose()
  }
}

export type BlobAnswer =
  | { status: 'found', bytes: Uint8Array }
  | { status: 'not-found' }
  | { status: 'too-large', size: number }

/**
 * Ask one peer on an open outbound stream. Verifies the size cap and the SHA-256; throws a
 * QuorateError with `fields.violation` when the peer misbehaved (wrong bytes, bad frames).
 */
export async function requestBlob (stream: Stream, sha256: string, maxBlobBytes: number): Promise<BlobAnswer> {
  const reader = new FrameReader(stream, MAX_FRAME_BYTES)
  try {
    const writer = new FrameWriter(stream)
    await writer.write(json({ type: 'get', sha256 }))
    await writer.flush()
    await stream.close() // our writable end; the answer still arrives
    const header = parseControl(await reader.next(), 'the answer')
    let answer: BlobAnswer
    if (header.type === 'not-found') {
      answer = { status: 'not-found' }
    } else if (header.type === 'too-large') {
      answer = { status: 'too-large', size: typeof header.size === 'number' ? header.size : -1 }
    } else if (header.type === 'blob') {
      const size = header.size
      if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw violation('"size" must be a non-negative integer', 'malformed')
      if (size > maxBlobBytes) return { status: 'too-large', size }
      // Chunks are kept as they arrive and hashed on the way: memory follows what the peer really
      // sent, not the size it announced (a peer announcing 64 MiB and sending nothing costs nothing).
      const chunks: Uint8Array[] = []
      const hash = createHash('sha256')
      let filled = 0
      while (filled < size) {
        const chunk = await reader.next()
        if (chunk === undefined) throw violation(`stream ended after ${filled} of ${size} bytes`, 'truncated')
        if (chunk.byteLength > size - filled) throw violation(`more data than the announced ${size} bytes`, 'malformed')
        const copy = chunk.slice()
        chunks.push(copy)
        hash.update(copy)
        filled += chunk.byteLength
      }
      const actual = hash.digest('hex')
      if (actual !== sha256) throw violation(`the bytes hash to ${actual}, not the requested ${sha256}`, 'bad-blob', { actual })
      // one copy into the result (new Uint8Array(Buffer.concat(chunks)) copied twice: 3x a 64 MiB blob at the peak)
      let bytes = chunks[0] ?? new Uint8Array(0)
      if (chunks.length > 1) {
        bytes = new Uint8Array(size)
        let at = 0
        for (const c of chunks) { bytes.set(c, at); at += c.byteLength }
      }
      answer = { status: 'found', bytes }
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

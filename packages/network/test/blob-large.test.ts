// Issue 14 item 10: file lists of huge outputs. 100,000 small files make a 12 MB list (over the
// former 8 MiB cap); 500,000 make one over the 64 MiB whole-blob cap. Blobs now travel by range
// (blob-protocol.ts), are hashed as they arrive and written to a file that is renamed into place
// only once its size and SHA-256 check out, so neither side holds a large blob in memory.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { open } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import type { Libp2p, Stream } from '@libp2p/interface'
import { BLOB_PROTOCOL, DEFAULT_MAX_BLOB_BYTES, LEGACY_WHOLE_BLOB_BYTES } from '../src/index.js'
import type { BlobReader, BlobSource } from '../src/index.js'
import { encodeFrame, FrameDecoder } from '../src/frames.js'
import { TestNodes, createRawPeer, waitFor } from './helpers.js'

const nodes = new TestNodes()
afterEach(async () => { await nodes.stopAll() })
const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex')
const MiB = 1024 * 1024
let dir: string
beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'quorate-blob-large-')) })
afterAll(() => { rmSync(dir, { recursive: true, force: true }) })

/** A BlobSource over files on disk, read by range (what the node passes from its store). */
function fileBlobs (files: Map<string, string>, reads: Array<{ offset: number, length: number }> = []): BlobSource {
  return {
    open: async (h): Promise<BlobReader | undefined> => {
      const path = files.get(h)
      if (path === undefined) return undefined
      const fh = await open(path, 'r')
      const { size } = await fh.stat()
      return {
        size,
        read: async (offset, length) => {
          reads.push({ offset, length })
          const buf = Buffer.alloc(length)
          const { bytesRead } = await fh.read(buf, 0, length, offset)
          return buf.subarray(0, bytesRead)
        },
        close: async () => { await fh.close() }
      }
    }
  }
}

describe('blob protocol: large blobs by range', () => {
  it('fetches a 12 MB file list (100,000 files) from a peer with the default caps', async () => {
    const list = new Uint8Array(randomBytes(12 * MiB + 5))
    expect(list.byteLength).toBeLessThan(DEFAULT_MAX_BLOB_BYTES)
    const holder = await nodes.start({ blobs: { get: async (h) => (h === sha256(list) ? list : undefined) } })
    const client = await nodes.start({ bootstrapTo: [holder] })
    await waitFor('the client to connect', () => client.net.connectedPeers().length === 1)
    const got = await client.net.fetchBlob(sha256(list), { timeoutMs: 30_000, peers: [holder.net.peerId] })
    expect(got?.byteLength).toBe(list.byteLength)
    expect(got !== undefined && sha256(got) === sha256(list)).toBe(true)
    expect(client.net.stats().streamViolations).toBe(0)
  })

  it('fetches a blob over the old 64 MiB cap into a file, range by range, both sides reading and writing it piece by piece', async () => {
    // Real size, once: a file list of about 540,000 files. The old protocol refused it (too-large).
    const blob = randomBytes(LEGACY_WHOLE_BLOB_BYTES + 3 * MiB + 7)
    const source = join(dir, 'big-source')
    writeFileSync(source, blob)
    const h = sha256(blob)
    const reads: Array<{ offset: number, length: number }> = []
    const holder = await nodes.start({ blobs: fileBlobs(new Map([[h, source]]), reads) })
    const events: string[] = []
    const client = await nodes.start({ bootstrapTo: [holder], log: (event, fields) => { if (event.startsWith('blob')) events.push(`${event} ${JSON.stringify(fields)}`) } })
    await waitFor('the client to connect', () => client.net.connectedPeers().length === 1)
    const dest = join(dir, 'big-fetched')
    const t0 = performance.now()
    // peers named: without them only peers whose identify says they serve blobs are asked, and identify may not have finished yet
    const size = await client.net.fetchBlobFile(h, dest, { timeoutMs: 30_000, peers: [holder.net.peerId] })
    const ms = performance.now() - t0
    expect(size, events.join('\n')).toBe(blob.byteLength)
    expect(sha256(readFileSync(dest))).toBe(h)
    expect(readdirSync(dir).filter(n => n.endsWith('.part'))).toEqual([]) // the temporary file became dest
    // the holder read 1 MiB pieces, never the whole blob
    expect(reads.length).toBeGreaterThan(60)
    expect(Math.max(...reads.map(r => r.length))).toBeLessThanOrEqual(MiB)
    expect(client.net.stats().blobsFetched).toBe(1)
    expect(client.net.stats().streamViolations).toBe(0)
    // fetchBlob (into memory) keeps its 64 MiB cap: a blob this large goes to a file only
    expect(await client.net.fetchBlob(h, { timeoutMs: 10_000, peers: [holder.net.peerId] })).toBeUndefined()
    console.log(`fetched ${(blob.byteLength / MiB).toFixed(1)} MiB by range in ${ms.toFixed(0)} ms`)
  }, 120_000)

  it('catches a peer that serves wrong bytes in a middle range, fails over to an honest peer, and leaves no file when none is honest', async () => {
    const blob = randomBytes(5 * MiB + 123)
    const h = sha256(blob)
    const good = join(dir, 'good')
    const bad = join(dir, 'bad')
    writeFileSync(good, blob)
    const forged = Buffer.from(blob)
    forged[2 * MiB + 5000] ^= 0xff // one byte in the third 1 MiB range
    writeFileSync(bad, forged)
    const liar = await nodes.start({ blobs: fileBlobs(new Map([[h, bad]])) })
    const honest = await nodes.start({ blobs: fileBlobs(new Map([[h, good]])) })
    const client = await nodes.start({ bootstrapTo: [liar, honest], blobRangeBytes: MiB })
    await waitFor('the client to connect', () => client.net.connectedPeers().length === 2)

    const dest = join(dir, 'failover')
    expect(await client.net.fetchBlobFile(h, dest, { peers: [liar.net.peerId, honest.net.peerId] })).toBe(blob.byteLength)
    expect(sha256(readFileSync(dest))).toBe(h)
    expect(client.net.stats().streamViolations).toBe(1) // the liar, penalized

    const only = join(dir, 'only-liar')
    expect(await client.net.fetchBlobFile(h, only, { peers: [liar.net.peerId] })).toBeUndefined()
    expect(existsSync(only)).toBe(false)
    expect(readdirSync(dir).filter(n => n.endsWith('.part'))).toEqual([])
    // the same lie in memory
    expect(await client.net.fetchBlob(h, { peers: [liar.net.peerId] })).toBeUndefined()
  }, 60_000)
})

describe('blob protocol: a hostile peer announcing sizes', () => {
  let raw: Libp2p
  /** What the raw peer answers to each request (given the request), as frames. */
  let answer: (req: { offset?: number, length?: number }) => Uint8Array[] = () => []
  let requests: Array<{ offset?: number, length?: number }> = []
  const control = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v))

  beforeAll(async () => {
    raw = await createRawPeer()
    await raw.handle(BLOB_PROTOCOL, (stream: Stream) => {
      const decoder = new FrameDecoder(4096)
      stream.addEventListener('message', (e) => {
        const data = e.data instanceof Uint8Array ? e.data : e.data.subarray()
        for (const frame of decoder.push(data)) {
          const req = JSON.parse(new TextDecoder().decode(frame)) as { offset?: number, length?: number }
          requests.push(req)
          for (const f of answer(req)) stream.send(encodeFrame(f))
          void stream.close().catch(() => {})
        }
      })
    })
  })
  afterAll(async () => { await raw?.stop() })

  it('cannot make us take more than the cap, or more than it announced, or change the size between ranges', async () => {
    const client = await nodes.start({ banMs: 0, maxBlobBytes: 8 * MiB, blobRangeBytes: MiB })
    await raw.dial(multiaddr(client.net.multiaddrs()[0] as string))
    await waitFor('the raw peer to connect', () => client.net.connectedPeers().includes(raw.peerId.toString()))
    const peers = [raw.peerId.toString()]
    const h = 'ab'.repeat(32)
    const chunk = new Uint8Array(64 * 1024)

    // 1 TiB announced: refused from the header, nothing asked further, nothing written
    requests = []
    answer = (req) => [control({ type: 'blob', size: 2 ** 40, offset: req.offset, length: MiB }), chunk, control({ type: 'end' })]
    const dest = join(dir, 'hostile')
    expect(await client.net.fetchBlobFile(h, dest, { peers, timeoutMs: 5000 })).toBeUndefined()
    expect(requests).toHaveLength(1)
    expect(existsSync(dest)).toBe(false)
    // the caller's own cap (the file list size it can handle) is lower still
    answer = (req) => [control({ type: 'blob', size: 2 * MiB, offset: req.offset, length: MiB }), control({ type: 'end' })]
    requests = []
    expect(await client.net.fetchBlobFile(h, dest, { peers, timeoutMs: 5000, maxBytes: MiB })).toBeUndefined()
    expect(requests).toHaveLength(1)

    // the size the caller knows (a signed file list's) is the only size taken
    const before = client.net.stats().streamViolations
    answer = (req) => [control({ type: 'blob', size: 3 * MiB, offset: req.offset, length: MiB }), control({ type: 'end' })]
    expect(await client.net.fetchBlobFile(h, dest, { peers, timeoutMs: 5000, size: 2 * MiB })).toBeUndefined()
    expect(client.net.stats().streamViolations).toBe(before + 1)

    // more bytes than the range it announced: cut off at once
    answer = (req) => [control({ type: 'blob', size: 2 * MiB, offset: req.offset, length: 64 * 1024 }), chunk, chunk, control({ type: 'end' })]
    expect(await client.net.fetchBlobFile(h, dest, { peers, timeoutMs: 5000 })).toBeUndefined()
    expect(client.net.stats().streamViolations).toBe(before + 2)

    // a size that grows between ranges: the first answer's size stands
    requests = []
    answer = (req) => [control({ type: 'blob', size: req.offset === 0 ? 2 * MiB : 7 * MiB, offset: req.offset, length: 64 * 1024 }), chunk, control({ type: 'end' })]
    expect(await client.net.fetchBlobFile(h, dest, { peers, timeoutMs: 5000 })).toBeUndefined()
    expect(requests.map(r => r.offset)).toEqual([0, 64 * 1024])
    expect(client.net.stats().streamViolations).toBe(before + 3)
    expect(existsSync(dest)).toBe(false)
    expect(readdirSync(dir).filter(n => n.endsWith('.part'))).toEqual([])
  })
})

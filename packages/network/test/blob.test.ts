import { afterEach, describe, expect, it } from 'vitest'
import { createHash, randomBytes } from 'node:crypto'
import { isQuorateError } from '@quorate/core'
import type { BlobSource } from '../src/index.js'
import { TestNodes, waitFor } from './helpers.js'

const nodes = new TestNodes()
afterEach(async () => { await nodes.stopAll() })

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex')

/** A BlobSource over a map, the narrow interface the node implements with store.getBlob. */
function memoryBlobs (...blobs: Uint8Array[]): BlobSource & { map: Map<string, Uint8Array>, asked: string[] } {
  const map = new Map(blobs.map(b => [sha256(b), b]))
  const asked: string[] = []
  return { map, asked, get: async (h) => { asked.push(h); return map.get(h) } }
}

describe('blob protocol /quorate/blob/1.0.0', () => {
  it('fetches a blob by sha256 from a peer that has it (several frames), skipping peers that do not', async () => {
    const blob = new Uint8Array(randomBytes(1024 * 1024 + 17)) // 17 chunks of 64 KiB and a bit
    const holder = await nodes.start({ blobs: memoryBlobs(blob) })
    const empty = await nodes.start({ blobs: memoryBlobs(), bootstrapTo: [holder] })
    const noBlobs = await nodes.start({ bootstrapTo: [holder] }) // serves no blobs at all
    const client = await nodes.start({ bootstrapTo: [empty, noBlobs, holder] })
    await waitFor('the client to connect to all three', () => client.net.connectedPeers().length === 3)

    const got = await client.net.fetchBlob(sha256(blob), { peers: [noBlobs.net.peerId, empty.net.peerId, holder.net.peerId] })
    expect(got !== undefined && Buffer.from(got).equals(Buffer.from(blob))).toBe(true)
    expect(client.net.stats().blobsFetched).toBe(1)
    expect(holder.net.stats().blobsServed).toBe(1)
    // without a peer list: every connected peer, in turn
    expect((await client.net.fetchBlob(sha256(blob)))?.byteLength).toBe(blob.byteLength)
    // nobody has it
    expect(await client.net.fetchBlob('0'.repeat(64))).toBeUndefined()
    expect(client.net.stats().streamViolations).toBe(0)
  })

  it('verifies the bytes: a peer that serves other bytes is penalized and the next peer asked', async () => {
    const blob = new Uint8Array(randomBytes(5000))
    const liarBlobs = memoryBlobs()
    liarBlobs.map.set(sha256(blob), new Uint8Array(randomBytes(5000)))
    const liar = await nodes.start({ blobs: liarBlobs })
    const honest = await nodes.start({ blobs: memoryBlobs(blob) })
    const client = await nodes.start({ bootstrapTo: [liar, honest] })
    await waitFor('the client to connect', () => client.net.connectedPeers().length === 2)
    const got = await client.net.fetchBlob(sha256(blob), { peers: [liar.net.peerId, honest.net.peerId] })
    expect(got !== undefined && sha256(got) === sha256(blob)).toBe(true)
    expect(client.net.stats().streamViolations).toBe(1)
    // a second lie from the same peer: banned
    await client.net.fetchBlob(sha256(blob), { peers: [liar.net.peerId] })
    await waitFor('the liar to be banned', () => client.net.stats().peersBanned === 1 && !client.net.connectedPeers().includes(liar.net.peerId))
  })

  it('refuses blobs over maxBlobBytes on either side, and bad digests as a usage error', async () => {
    const big = new Uint8Array(randomBytes(300_000))
    const server = await nodes.start({ blobs: memoryBlobs(big), maxBlobBytes: 200_000 })
    const client = await nodes.start({ bootstrapTo: [server] })
    await waitFor('the client to connect', () => client.net.connectedPeers().length === 1)
    expect(await client.net.fetchBlob(sha256(big))).toBeUndefined() // the server will not send it

    const server2 = await nodes.start({ blobs: memoryBlobs(big) })
    const client2 = await nodes.start({ bootstrapTo: [server2], maxBlobBytes: 100_000 })
    await waitFor('client2 to connect', () => client2.net.connectedPeers().length === 1)
    expect(await client2.net.fetchBlob(sha256(big))).toBeUndefined() // the client will not take it
    expect(client2.net.stats().streamViolations).toBe(0)

    const err = await client.net.fetchBlob('ABC').catch((e: unknown) => e)
    expect(isQuorateError(err, 'USAGE')).toBe(true)
  })

  it('gives up after timeoutMs when a peer never answers', async () => {
    const stalled = await nodes.start({ blobs: { get: async () => await new Promise<undefined>(() => {}) } })
    const client = await nodes.start({ bootstrapTo: [stalled] })
    await waitFor('the client to connect', () => client.net.connectedPeers().length === 1)
    const t0 = Date.now()
    expect(await client.net.fetchBlob('1'.repeat(64), { timeoutMs: 500 })).toBeUndefined()
    expect(Date.now() - t0).toBeLessThan(3000)
    expect(client.net.stats().peersBanned).toBe(0) // a slow peer is not punished by the client
  })
})

// Issue 14 item 10: the file list of an output of 100,000 small files is about 12 MB, over the
// former 8 MiB blob cap, so no peer could fetch it. Blobs travel as 64 KiB data frames; the
// default cap now takes such a list.
import { afterEach, describe, expect, it } from 'vitest'
import { createHash, randomBytes } from 'node:crypto'
import { DEFAULT_MAX_BLOB_BYTES } from '../src/index.js'
import { TestNodes, waitFor } from './helpers.js'

const nodes = new TestNodes()
afterEach(async () => { await nodes.stopAll() })
const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex')

describe('blob protocol: large blobs', () => {
  it('fetches a 12 MB file list (100,000 files) from a peer with the default caps', async () => {
    const list = new Uint8Array(randomBytes(12 * 1024 * 1024 + 5))
    expect(list.byteLength).toBeLessThan(DEFAULT_MAX_BLOB_BYTES)
    const holder = await nodes.start({ blobs: { get: async (h) => (h === sha256(list) ? list : undefined) } })
    const client = await nodes.start({ bootstrapTo: [holder] })
    await waitFor('the client to connect', () => client.net.connectedPeers().length === 1)
    const got = await client.net.fetchBlob(sha256(list), { timeoutMs: 30_000 })
    expect(got?.byteLength).toBe(list.byteLength)
    expect(got !== undefined && sha256(got) === sha256(list)).toBe(true)
    expect(client.net.stats().streamViolations).toBe(0)
  })
})

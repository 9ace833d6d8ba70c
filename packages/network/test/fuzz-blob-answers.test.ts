// Property-based fuzzing of blob answers (file lists, build logs) from a hostile peer: a bare libp2p
// peer answers every blob request with random frames (random control JSON, sizes that lie, too many
// or too few data bytes, wrong bytes, no end frame, garbage). Properties: fetchBlob returns the
// genuine bytes only when the peer sent exactly them, otherwise undefined; it never throws and
// never outlives its timeout.
// QUORATE_FUZZ_RUNS=10 multiplies the runs for a longer local session.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { createHash } from 'node:crypto'
import { multiaddr } from '@multiformats/multiaddr'
import type { Libp2p, Stream } from '@libp2p/interface'
import { BLOB_PROTOCOL } from '../src/index.js'
import { encodeFrame } from '../src/frames.js'
import { TestNodes, createRawPeer, waitFor, type TestNode } from './helpers.js'

const SCALE = Number(process.env.QUORATE_FUZZ_RUNS ?? 1)
const runs = (n: number): { numRuns: number } => ({ numRuns: Math.max(1, Math.round(n * SCALE)) })

const nodes = new TestNodes()
let client: TestNode
let raw: Libp2p
let answer: Uint8Array[] = []
let closeAfter = true

const blob = new Uint8Array(Array.from({ length: 300 }, (_, i) => (i * 7) % 256))
const sha = createHash('sha256').update(blob).digest('hex')
const control = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v))

beforeAll(async () => {
  client = await nodes.start({ banMs: 0 }) // every answer is judged on its own: no ban cuts the fuzzing short
  raw = await createRawPeer()
  await raw.handle(BLOB_PROTOCOL, (stream: Stream) => {
    for (const f of answer) stream.send(encodeFrame(f))
    if (closeAfter) void stream.close().catch(() => {})
  })
  await raw.dial(multiaddr(client.net.multiaddrs()[0] as string))
  await waitFor('the raw peer to connect', () => client.net.connectedPeers().includes(raw.peerId.toString()))
})
afterAll(async () => {
  await raw?.stop()
  await nodes.stopAll()
})

const frameArb: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.record({ type: fc.constantFrom('blob', 'not-found', 'too-large', 'end', 'get', 'x'), size: fc.oneof(fc.constantFrom(0, 1, 299, 300, 301, -1, 1.5, 2 ** 53, 64 * 1024 * 1024 + 1), fc.jsonValue({ maxDepth: 1 })) }, { requiredKeys: ['type'] }).map(control),
  fc.uint8Array({ maxLength: 400 }),
  fc.constant(blob), fc.constant(blob.subarray(0, 150)), fc.constant(blob.subarray(150)),
  fc.constant(control({ type: 'end' })),
  fc.jsonValue({ maxDepth: 2 }).map(control)
)

describe('fuzz: blob answers from a hostile peer', () => {
  it('returns the genuine bytes or undefined, within its timeout, whatever frames the peer sends', async () => {
    await fc.assert(fc.asyncProperty(fc.array(frameArb, { maxLength: 6 }), fc.boolean(), fc.constantFrom(true, true, true, true, false), async (frames, genuineHead, close) => {
      answer = genuineHead ? [control({ type: 'blob', size: blob.byteLength }), ...frames] : frames
      closeAfter = close
      const t0 = Date.now()
      const got = await client.net.fetchBlob(sha, { peers: [raw.peerId.toString()], timeoutMs: 400 })
      expect(Date.now() - t0).toBeLessThan(400 + 4000) // bounded by its timeout (slack for a loaded machine)
      if (got !== undefined) expect(Buffer.from(got).equals(Buffer.from(blob))).toBe(true)
    }), runs(50))
    // and the genuine answer is taken
    answer = [control({ type: 'blob', size: blob.byteLength }), blob.subarray(0, 100), blob.subarray(100), control({ type: 'end' })]
    closeAfter = true
    const got = await client.net.fetchBlob(sha, { peers: [raw.peerId.toString()], timeoutMs: 3000 })
    expect(got !== undefined && Buffer.from(got).equals(Buffer.from(blob))).toBe(true)
  })
})

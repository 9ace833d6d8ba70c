// Property-based fuzzing of what a peer sends on a sync stream: the length-prefixed frame decoder
// and the sync frames inside it. Properties: any bytes, in any chunking, give frames or a
// QuorateError('NETWORK_FAILED') (the peer's fault, with a violation kind for its standing) and
// nothing else; the decoder never buffers more than one frame (bounded memory, so a peer cannot
// hold a reader forever with a growing buffer); valid frames round-trip however they are split.
// QUORATE_FUZZ_RUNS=10 multiplies the runs for a longer local session.
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { isQuorateError } from '@quorate/core'
import { FrameDecoder, encodeFrame } from '../src/frames.js'
import { encodeSyncFrame, parseSyncFrame, type SyncFrame } from '../src/sync-frames.js'

const SCALE = Number(process.env.QUORATE_FUZZ_RUNS ?? 1)
const runs = (n: number): { numRuns: number } => ({ numRuns: Math.max(1, Math.round(n * SCALE)) })

function networkFailure (f: () => void): boolean {
  try {
    f()
    return false
  } catch (err) {
    if (isQuorateError(err, 'NETWORK_FAILED') && typeof err.fields.violation === 'string') return true
    throw err
  }
}

/** Split `bytes` at the given cut points. */
function split (bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const at = [...new Set(cuts.map(c => c % (bytes.length + 1)))].sort((a, b) => a - b)
  const out: Uint8Array[] = []
  let prev = 0
  for (const c of [...at, bytes.length]) { out.push(bytes.subarray(prev, c)); prev = c }
  return out
}

const repoIdArb = fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,20}$/)
const tokenArb = fc.stringMatching(/^[A-Za-z0-9._:+/=-]{1,64}$/)
const headArb = fc.record({ repoId: repoIdArb, keyid: tokenArb, seq: fc.integer({ min: 1, max: 2 ** 40 }), envelopeId: tokenArb, firstMissing: fc.option(fc.nat(), { nil: undefined }) })
  .map(h => {
    const { firstMissing, ...rest } = h
    return firstMissing === undefined ? rest : { ...rest, firstMissing: firstMissing % rest.seq }
  })
const syncFrameArb: fc.Arbitrary<SyncFrame> = fc.oneof(
  fc.record({ type: fc.constant('heads' as const), heads: fc.array(headArb, { maxLength: 8 }), repoIds: fc.option(fc.array(repoIdArb, { maxLength: 4 }), { nil: undefined }), more: fc.option(fc.boolean(), { nil: undefined }) }, { requiredKeys: ['type', 'heads'] }),
  fc.record({ type: fc.constant('env' as const), repoId: repoIdArb, data: fc.uint8Array({ maxLength: 300 }) }),
  fc.constant({ type: 'end' as const })
).map(f => JSON.parse(JSON.stringify(f, (k, v) => (v instanceof Uint8Array ? { __bytes: [...v] } : v)), (k, v) => (v !== null && typeof v === 'object' && '__bytes' in v ? new Uint8Array(v.__bytes as number[]) : v)) as SyncFrame)

describe('fuzz: sync stream frames (FrameDecoder)', () => {
  it('decodes arbitrary bytes in arbitrary chunks into frames or a NETWORK_FAILED violation, buffering at most one frame', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 4096 }), fc.array(fc.nat(), { maxLength: 8 }), fc.constantFrom(16, 1024, 128 * 1024), (bytes, cuts, max) => {
      const d = new FrameDecoder(max)
      networkFailure(() => {
        for (const chunk of split(bytes, cuts)) {
          for (const f of d.push(chunk)) expect(f.byteLength).toBeLessThanOrEqual(max)
          // a frame in progress plus at most a partial varint header: memory stays bounded by the cap
          expect(d.bufferedBytes).toBeLessThan(max + 10)
        }
      })
    }), runs(400))
  })

  it('round-trips any list of frames, however the stream splits them', () => {
    fc.assert(fc.property(fc.array(fc.uint8Array({ maxLength: 600 }), { maxLength: 8 }), fc.array(fc.nat(), { maxLength: 10 }), (payloads, cuts) => {
      const wire = Buffer.concat(payloads.map(encodeFrame))
      const d = new FrameDecoder(1024)
      const out: Uint8Array[] = []
      for (const chunk of split(wire, cuts)) out.push(...d.push(chunk))
      expect(out.map(f => Buffer.from(f).toString('hex'))).toEqual(payloads.map(p => Buffer.from(p).toString('hex')))
      expect(d.hasPartial).toBe(false)
    }), runs(300))
  })

  it('refuses an announced length over the cap as soon as the header arrives', () => {
    fc.assert(fc.property(fc.integer({ min: 1025, max: 2 ** 40 }), n => {
      const header = encodeVarint(n)
      const d = new FrameDecoder(1024)
      expect(networkFailure(() => d.push(header))).toBe(true)
    }), runs(100))
  })
})

function encodeVarint (n: number): Uint8Array {
  const out: number[] = []
  do {
    let b = n % 128
    n = Math.floor(n / 128)
    if (n > 0) b |= 0x80
    out.push(b)
  } while (n > 0)
  return new Uint8Array(out)
}

describe('fuzz: sync frames (parseSyncFrame)', () => {
  it('parses arbitrary bytes and JSON into a frame or a NETWORK_FAILED violation', () => {
    fc.assert(fc.property(fc.oneof(
      fc.uint8Array({ maxLength: 512 }),
      fc.jsonValue({ maxDepth: 4 }).map(v => new TextEncoder().encode(JSON.stringify(v))),
      fc.record({ type: fc.constantFrom('heads', 'env', 'end', 'get', ''), heads: fc.jsonValue({ maxDepth: 3 }), repoIds: fc.jsonValue({ maxDepth: 2 }), repoId: fc.jsonValue({ maxDepth: 1 }), data: fc.jsonValue({ maxDepth: 1 }), more: fc.jsonValue({ maxDepth: 1 }) }, { requiredKeys: ['type'] })
        .map(v => new TextEncoder().encode(JSON.stringify(v)))
    ), bytes => {
      networkFailure(() => { parseSyncFrame(bytes) })
    }), runs(500))
  })

  it('refuses heads with a field mutated to a hostile value, or keeps them within their rules', () => {
    fc.assert(fc.property(headArb, fc.constantFrom('repoId', 'keyid', 'seq', 'envelopeId', 'firstMissing'), fc.jsonValue({ maxDepth: 2 }), (head, field, value) => {
      const bytes = new TextEncoder().encode(JSON.stringify({ type: 'heads', heads: [{ ...head, [field]: value }] }))
      let frame: SyncFrame | undefined
      networkFailure(() => { frame = parseSyncFrame(bytes) })
      if (frame?.type === 'heads') {
        const h = frame.heads[0]!
        expect(Number.isSafeInteger(h.seq) && h.seq >= 0).toBe(true)
        if (h.firstMissing !== undefined) expect(h.firstMissing).toBeLessThan(h.seq)
      }
    }), runs(300))
  })

  it('round-trips valid frames through encodeSyncFrame and a split stream', () => {
    fc.assert(fc.property(fc.array(syncFrameArb, { minLength: 1, maxLength: 5 }), fc.array(fc.nat(), { maxLength: 6 }), (frames, cuts) => {
      const wire = Buffer.concat(frames.map(f => encodeFrame(encodeSyncFrame(f))))
      const d = new FrameDecoder()
      const out: SyncFrame[] = []
      for (const chunk of split(wire, cuts)) for (const f of d.push(chunk)) out.push(parseSyncFrame(f))
      expect(out).toEqual(frames)
    }), runs(200))
  })
})

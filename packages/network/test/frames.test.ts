import { describe, expect, it } from 'vitest'
import { isQuorateError } from '@quorate/core'
import * as lp from 'it-length-prefixed'
import { FrameDecoder, encodeFrame } from '../src/frames.js'
import { encodeSyncFrame, parseSyncFrame } from '../src/sync-frames.js'
import { planTransfers } from '../src/sync-protocol.js'
import type { LogHead } from '../src/index.js'

const bytes = (n: number, fill = 7): Uint8Array => new Uint8Array(n).fill(fill)
const json = (value: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(value))

describe('frames', () => {
  it('round-trips frames of every header length, split at any byte', () => {
    const payloads = [0, 1, 127, 128, 300, 16383, 16384, 100_000].map((n, i) => bytes(n, i))
    const wire = Buffer.concat(payloads.map(encodeFrame))
    for (const chunkSize of [1, 3, 4096, wire.length]) {
      const decoder = new FrameDecoder(128 * 1024)
      const out: Uint8Array[] = []
      for (let i = 0; i < wire.length; i += chunkSize) out.push(...decoder.push(wire.subarray(i, i + chunkSize)))
      expect(out.map(f => f.byteLength)).toEqual(payloads.map(p => p.byteLength))
      expect(out.every((f, i) => Buffer.from(f).equals(Buffer.from(payloads[i] as Uint8Array)))).toBe(true)
      expect(decoder.hasPartial).toBe(false)
    }
  })

  it('uses the it-length-prefixed wire format (unsigned varint length), checked against it-length-prefixed', () => {
    expect([...encodeFrame(bytes(300)).subarray(0, 2)]).toEqual([0xac, 0x02])
    const payloads = [0, 5, 127, 128, 70_000].map((n, i) => bytes(n, i))
    for (const p of payloads) expect(Buffer.from(encodeFrame(p)).equals(Buffer.from(lp.encode.single(p).subarray()))).toBe(true)
    const theirs = [...lp.decode([Buffer.concat(payloads.map(encodeFrame))])].map(list => list.subarray())
    expect(theirs.map(f => f.byteLength)).toEqual(payloads.map(p => p.byteLength))
  })

  it('refuses an oversized frame as soon as its length arrives', () => {
    const decoder = new FrameDecoder(1024)
    const header = encodeFrame(bytes(1025)).subarray(0, 2)
    let err: unknown
    try {
      decoder.push(header)
    } catch (e) {
      err = e
    }
    expect(isQuorateError(err, 'NETWORK_FAILED')).toBe(true)
    expect((err as Error).message).toMatch(/larger than 1024 bytes/)
  })

  it('reports a partial frame (a truncated stream)', () => {
    const decoder = new FrameDecoder()
    expect(decoder.push(encodeFrame(bytes(10)).subarray(0, 5))).toEqual([])
    expect(decoder.hasPartial).toBe(true)
  })
})

describe('sync frames', () => {
  const head: LogHead = { repoId: 'demo', keyid: 'a'.repeat(64), seq: 3, envelopeId: 'b'.repeat(64) }

  it('round-trips heads, env and end frames', () => {
    const data = bytes(1500, 9)
    expect(parseSyncFrame(encodeSyncFrame({ type: 'heads', heads: [head], repoIds: ['demo'], more: true }))).toEqual({ type: 'heads', heads: [head], repoIds: ['demo'], more: true })
    const env = parseSyncFrame(encodeSyncFrame({ type: 'env', repoId: 'demo', data }))
    expect(env.type === 'env' && Buffer.from(env.data).equals(Buffer.from(data))).toBe(true)
    expect(parseSyncFrame(encodeSyncFrame({ type: 'end' }))).toEqual({ type: 'end' })
  })

  it.each([
    ['not JSON', new TextEncoder().encode('{')],
    ['an unknown type', json({ type: 'gimme' })],
    ['a bad repoId', json({ type: 'env', repoId: 'https://example.com/x.git', data: '' })],
    ['loose base64', json({ type: 'env', repoId: 'demo', data: 'aGk' })],
    ['a negative seq', json({ type: 'heads', repoIds: ['demo'], heads: [{ ...head, seq: -1 }] })],
    ['a non-integer seq', json({ type: 'heads', repoIds: ['demo'], heads: [{ ...head, seq: 1.5 }] })],
    ['heads that are not an array', json({ type: 'heads', heads: {} })]
  ])('rejects %s', (_what, frame) => {
    expect(() => parseSyncFrame(frame)).toThrow(/sync protocol/)
  })

  it('plans what the peer lacks, in the repositories it carries', () => {
    const ours: LogHead[] = [
      { repoId: 'demo', keyid: 'k1', seq: 9, envelopeId: 'e9' }, // peer at 4: send 5..9
      { repoId: 'demo', keyid: 'k2', seq: 2, envelopeId: 'x2' }, // peer has none: send all
      { repoId: 'demo', keyid: 'k3', seq: 5, envelopeId: 'e5' }, // peer ahead: nothing
      { repoId: 'demo', keyid: 'k4', seq: 7, envelopeId: 'ours' }, // fork at 7: send ours
      { repoId: 'demo', keyid: 'k5', seq: 1, envelopeId: 'same' }, // equal: nothing
      { repoId: 'other', keyid: 'k1', seq: 3, envelopeId: 'o3' } // peer does not carry it
    ]
    const theirs = new Map<string, LogHead>([
      ['demo\nk1', { repoId: 'demo', keyid: 'k1', seq: 4, envelopeId: 'e4' }],
      ['demo\nk3', { repoId: 'demo', keyid: 'k3', seq: 8, envelopeId: 'e8' }],
      ['demo\nk4', { repoId: 'demo', keyid: 'k4', seq: 7, envelopeId: 'theirs' }],
      ['demo\nk5', { repoId: 'demo', keyid: 'k5', seq: 1, envelopeId: 'same' }]
    ])
    expect(planTransfers(ours, theirs, new Set(['demo']))).toEqual([
      { repoId: 'demo', keyid: 'k1', afterSeq: 4 },
      { repoId: 'demo', keyid: 'k2', afterSeq: -1 },
      { repoId: 'demo', keyid: 'k4', afterSeq: 6 }
    ])
  })

  it('fills a gap the peer reports (firstMissing) when we hold that seq', () => {
    const ours: LogHead[] = [
      { repoId: 'demo', keyid: 'g1', seq: 9, envelopeId: 'e9' }, // complete: fill the peer's gap at 3
      { repoId: 'demo', keyid: 'g2', seq: 9, envelopeId: 'e9', firstMissing: 2 }, // we lack 2 as well: nothing
      { repoId: 'demo', keyid: 'g3', seq: 9, envelopeId: 'e9', firstMissing: 6 }, // we hold 3 (our gap is later)
      { repoId: 'demo', keyid: 'g4', seq: 2, envelopeId: 'e2' } // behind the peer, but holds its missing 1
    ]
    const theirs = new Map<string, LogHead>([
      ['demo\ng1', { repoId: 'demo', keyid: 'g1', seq: 9, envelopeId: 'e9', firstMissing: 3 }],
      ['demo\ng2', { repoId: 'demo', keyid: 'g2', seq: 9, envelopeId: 'e9', firstMissing: 2 }],
      ['demo\ng3', { repoId: 'demo', keyid: 'g3', seq: 9, envelopeId: 'e9', firstMissing: 3 }],
      ['demo\ng4', { repoId: 'demo', keyid: 'g4', seq: 8, envelopeId: 'e8', firstMissing: 1 }]
    ])
    expect(planTransfers(ours, theirs, new Set(['demo']))).toEqual([
      { repoId: 'demo', keyid: 'g1', afterSeq: 2 },
      { repoId: 'demo', keyid: 'g3', afterSeq: 2 },
      { repoId: 'demo', keyid: 'g4', afterSeq: 0 }
    ])
  })

  it('refuses a firstMissing that is not below seq', () => {
    const frame = new TextEncoder().encode(JSON.stringify({ type: 'heads', repoIds: ['demo'], heads: [{ repoId: 'demo', keyid: 'k', seq: 3, envelopeId: 'e', firstMissing: 3 }] }))
    expect(() => parseSyncFrame(frame)).toThrow(/firstMissing/)
  })
})

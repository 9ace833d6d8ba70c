import { runInNewContext } from 'node:vm'
import { setFlagsFromString } from 'node:v8'
import { afterEach, describe, expect, it } from 'vitest'
import type { Libp2p, Stream } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { SYNC_PROTOCOL } from '../src/index.js'
import { encodeFrame } from '../src/frames.js'
import { FrameReader } from '../src/stream-io.js'
import { encodeSyncFrame, parseSyncFrame } from '../src/sync-frames.js'
import { MemorySyncSource, REPO, TestNodes, createRawPeer, makeEnvelope, waitFor } from './helpers.js'
import type { TestNode } from './helpers.js'

// Issue 14 items 4 and 12: peers that hold sync rounds open without progress, and peers that
// announce huge numbers of heads. Raw libp2p peers (no Quorate code) against real nodes.

const nodes = new TestNodes()
const rawNodes: Libp2p[] = []
afterEach(async () => {
  await nodes.stopAll()
  await Promise.allSettled(rawNodes.splice(0).map(async n => { await n.stop() }))
})

async function rawPeer (): Promise<Libp2p> {
  const node = await createRawPeer()
  rawNodes.push(node)
  return node
}

const frame = (value: unknown): Uint8Array => encodeFrame(new TextEncoder().encode(JSON.stringify(value)))

function sourceWith (keyid: string, count: number): MemorySyncSource {
  const source = new MemorySyncSource()
  for (let seq = 0; seq < count; seq++) source.add(REPO, keyid, seq, makeEnvelope(REPO, keyid, seq))
  return source
}

/** Open a sync round with `target` from a new raw peer that sends its (empty) heads and then nothing, ever. */
async function stallingRound (target: TestNode): Promise<Stream> {
  const raw = await rawPeer()
  const stream = await raw.dialProtocol(multiaddr(target.net.multiaddrs()[0]), SYNC_PROTOCOL)
  try {
    stream.send(frame({ type: 'heads', repoIds: [REPO], heads: [] }))
  } catch {} // refused already: the stream is closed
  return stream
}

function heapMiB (): number {
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  gc()
  gc()
  return process.memoryUsage().heapUsed / 1024 / 1024
}

describe('sync under stalling peers (issue 14 item 4)', () => {
  it('raw peers holding every open inbound slot lock out neither a proven peer nor, after the attack, the periodic sync', { timeout: 60_000 }, async () => {
    // a has no periodic sync of its own: what b and c get after the connect round, they fetch themselves
    const a = await nodes.start({ source: sourceWith('key-a', 5), syncIntervalMs: 0 })
    // b holds envelopes a lacks: the connect round proves it (valid envelopes delivered)
    const b = await nodes.start({ source: sourceWith('key-b', 2), bootstrapTo: [a], syncIntervalMs: 1000 })
    // c delivers nothing: an honest peer that a has no reason to trust yet
    const c = await nodes.start({ bootstrapTo: [a], syncIntervalMs: 1000 })
    await waitFor('the connect rounds', () => a.source.count() === 7 && b.source.count() === 7 && c.source.count() === 7)

    // the attack: 8 stalling rounds take every slot open to unproven peers
    const held: Stream[] = []
    for (let i = 0; i < 8; i++) held.push(await stallingRound(a))
    const refusedBefore = a.net.stats().syncRefused
    const ninth = await stallingRound(a)
    await waitFor('a to refuse a ninth stalling round', () => a.net.stats().syncRefused > refusedBefore)
    expect(held).toHaveLength(8)
    expect(held.every(s => s.status === 'open')).toBe(true)
    expect(ninth.status).not.toBe('open')

    a.source.add(REPO, 'key-a', 5, makeEnvelope(REPO, 'key-a', 5))
    // b is proven: a reserved slot lets its round in while the attack goes on
    const started = Date.now()
    const got = await b.net.syncWith(a.net.peerId)
    const provenMs = Date.now() - started
    expect(got.received).toBe(1)
    expect(b.source.count()).toBe(8)
    // c is refused, and its round ends at once instead of hanging (and blocking every later round)
    const refusedAt = Date.now()
    const refused = await c.net.syncWith(a.net.peerId).then(() => undefined, (err: unknown) => err)
    const refusedMs = Date.now() - refusedAt
    expect(refused).toBeInstanceOf(Error)
    expect(c.source.count()).toBe(7)

    // the attack ends; c's own periodic sync fetches what it missed
    const attackEnded = Date.now()
    await Promise.all(rawNodes.map(async n => { await n.stop() }))
    await waitFor('c to catch up by its periodic sync', () => c.source.count() === 8, 15_000)
    const recoverMs = Date.now() - attackEnded
    console.log(`[stall] proven peer synced in ${provenMs} ms during the attack; unproven peer's round refused and ended in ${refusedMs} ms; caught up ${recoverMs} ms after the attack ended (period 1000 ms)`)
  })

  it('a round whose peer sends nothing ends at the idle timeout, and a peer that stalls twice is banned', async () => {
    const events: Array<{ event: string, fields: Record<string, unknown> }> = []
    const a = await nodes.start({ source: sourceWith('key-a', 3), syncIdleTimeoutMs: 300, log: (event, fields) => { events.push({ event, fields }) } })
    const raw = await rawPeer()
    const ma = multiaddr(a.net.multiaddrs()[0])
    for (let i = 0; i < 2; i++) {
      const stream = await raw.dialProtocol(ma, SYNC_PROTOCOL)
      stream.send(frame({ type: 'heads', repoIds: [REPO], heads: [] }))
      await waitFor(`stalled round ${i + 1} to end`, () => a.net.stats().syncStalled === i + 1, 5000)
    }
    expect(events.filter(e => e.event === 'peer-misbehaved').map(e => e.fields.kind)).toEqual(['stalled', 'stalled'])
    await waitFor('the ban', () => a.net.stats().peersBanned === 1)
    expect(events.find(e => e.event === 'peer-banned')?.fields).toMatchObject({ peer: raw.peerId.toString() })
  })
})

describe('sync heads (issue 14 item 12)', () => {
  it('keeps only the heads of logs it holds, however many a peer announces, and none after the round', { timeout: 90_000 }, async () => {
    let inboundFailures = 0
    const a = await nodes.start({ source: sourceWith('key-a', 3), syncIntervalMs: 0, log: (event, fields) => { if (event === 'sync-failed' && fields.reason === 'inbound') inboundFailures++ } })
    const before = heapMiB()
    const PEERS = 8
    const HEADS = 50_000
    const PER_FRAME = 500
    const streams: Stream[] = []
    const answered: Array<Promise<void>> = []
    for (let p = 0; p < PEERS; p++) {
      const raw = await rawPeer()
      const stream = await raw.dialProtocol(multiaddr(a.net.multiaddrs()[0]), SYNC_PROTOCOL)
      streams.push(stream)
      // a answers our heads with its envelopes and its end frame: proof it read all of them
      const reader = new FrameReader(stream, 1024 * 1024)
      answered.push((async () => {
        for (;;) {
          const bytes = await reader.next()
          if (bytes === undefined || parseSyncFrame(bytes).type === 'end') return
        }
      })())
      for (let i = 0; i < HEADS; i += PER_FRAME) {
        const heads = Array.from({ length: PER_FRAME }, (_, j) => ({ repoId: REPO, keyid: `p${p}-k${i + j}`.padEnd(64, 'x'), seq: 1000, envelopeId: 'e'.repeat(64) }))
        const bytes = encodeFrame(encodeSyncFrame({ type: 'heads', heads, ...(i === 0 ? { repoIds: [REPO] } : {}), ...(i + PER_FRAME < HEADS ? { more: true } : {}) }))
        if (!stream.send(bytes)) await new Promise(resolve => stream.addEventListener('drain', resolve, { once: true }))
      }
      // and then we hold the round open: no env frames, no end frame
    }
    await Promise.all(answered)
    expect(a.net.stats().syncSent).toBe(0) // the rounds are still open
    const during = heapMiB()
    expect(streams).toHaveLength(PEERS)
    expect(streams.every(s => s.status === 'open')).toBe(true)
    await Promise.all(rawNodes.map(async n => { await n.stop() }))
    await waitFor('the held rounds to end', () => inboundFailures === PEERS, 10_000)
    const after = heapMiB()
    console.log(`[heads] ${PEERS} rounds announcing ${HEADS} heads each: heap ${before.toFixed(0)} MiB before, ${during.toFixed(0)} MiB while held, ${after.toFixed(0)} MiB after the rounds ended`)
    // 400,000 heads kept would be over 100 MiB
    expect(during - before).toBeLessThan(30)
    expect(after - before).toBeLessThan(30)
  })

  it('ends a round that announces more than 200,000 heads and penalizes the peer', { timeout: 60_000 }, async () => {
    const events: Array<{ event: string, fields: Record<string, unknown> }> = []
    const a = await nodes.start({ syncIntervalMs: 0, log: (event, fields) => { events.push({ event, fields }) } })
    const raw = await rawPeer()
    const stream = await raw.dialProtocol(multiaddr(a.net.multiaddrs()[0]), SYNC_PROTOCOL)
    const PER_FRAME = 700
    for (let i = 0; i <= 200_000 && stream.status === 'open'; i += PER_FRAME) {
      const heads = Array.from({ length: PER_FRAME }, (_, j) => ({ repoId: REPO, keyid: `k${i + j}`, seq: 1, envelopeId: 'e' }))
      if (!stream.send(encodeFrame(encodeSyncFrame({ type: 'heads', heads, ...(i === 0 ? { repoIds: [REPO] } : {}), more: true })))) {
        await new Promise(resolve => { stream.addEventListener('drain', resolve, { once: true }); stream.addEventListener('close', resolve, { once: true }) })
      }
    }
    // (a's own connect round towards the raw peer fails too: it does not speak sync)
    await waitFor('a to end the round', () => events.some(e => e.event === 'sync-failed' && e.fields.reason === 'inbound'), 20_000)
    expect(events.find(e => e.event === 'peer-misbehaved')?.fields).toMatchObject({ kind: 'oversized', peer: raw.peerId.toString() })
  })
})

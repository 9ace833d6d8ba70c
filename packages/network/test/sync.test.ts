import { afterEach, describe, expect, it } from 'vitest'
import type { Libp2p, Stream, StreamCloseEvent } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { SYNC_PROTOCOL } from '../src/index.js'
import { VALIDATION_WINDOW } from '../src/sync-receive.js'
import { encodeFrame } from '../src/frames.js'
import { MemorySyncSource, REPO, TestNodes, createRawPeer, makeEnvelope, storingValidator, waitFor, waitForSteady } from './helpers.js'

const nodes = new TestNodes()
const rawNodes: Libp2p[] = []
afterEach(async () => {
  await nodes.stopAll()
  await Promise.allSettled(rawNodes.splice(0).map(async n => { await n.stop() }))
})

function sourceWith (keyid: string, count: number, from = 0): MemorySyncSource {
  const source = new MemorySyncSource()
  for (let seq = from; seq < from + count; seq++) source.add(REPO, keyid, seq, makeEnvelope(REPO, keyid, seq))
  return source
}

/** A bare libp2p peer (no Quorate code) to speak broken sync; stopped after the test. */
async function rawPeer (): Promise<Libp2p> {
  const node = await createRawPeer()
  rawNodes.push(node)
  return node
}

async function closed (stream: Stream, timeoutMs: number): Promise<StreamCloseEvent> {
  return await new Promise((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`stream still open after ${timeoutMs} ms`)) }, timeoutMs)
    stream.addEventListener('close', (evt) => { clearTimeout(timer); resolve(evt) }, { once: true })
  })
}

describe('sync protocol', () => {
  it('gives a node that starts later all 50 envelopes it missed, through validate, and both sides what they lack', async () => {
    const a = await nodes.start({ source: sourceWith('key-a', 50) })
    const b = await nodes.start({ source: sourceWith('key-b', 5), bootstrapTo: [a] })
    await waitFor('both sides to hold all 55', () => b.source.count() === 55 && a.source.count() === 55)

    const viaSync = b.seen.filter(m => m.via === 'sync')
    expect(viaSync).toHaveLength(50) // non-empty: the every() below checks something
    expect(viaSync.every(m => m.from === a.net.peerId && m.repoId === REPO)).toBe(true)
    // seq ascending, bytes identical to what a holds
    const seqs = viaSync.map(m => (JSON.parse(new TextDecoder().decode(m.data)) as { seq: number }).seq)
    expect(seqs).toEqual([...Array(50).keys()])
    const aLog = a.source.logs.get(`${REPO}\nkey-a`)
    expect(viaSync.every((m, i) => Buffer.from(m.data).equals(Buffer.from(aLog?.entries[i]?.data ?? [])))).toBe(true)
    expect(a.seen.filter(m => m.via === 'sync')).toHaveLength(5)
    expect(b.net.stats()).toMatchObject({ syncReceived: 50, syncAccepted: 50 })

    // one more round: nothing left to move
    expect(await b.net.syncWith(a.net.peerId)).toEqual({ received: 0, accepted: 0, sent: 0 })
  })

  it('validates several received envelopes at once (verifying the next overlaps storing the last) and still counts every verdict', async () => {
    const a = await nodes.start({ source: sourceWith('key-a', 200) })
    const bSource = sourceWith('key-b', 1)
    const store = storingValidator(bSource, [])
    let inFlight = 0
    let most = 0
    const b = await nodes.start({
      source: bSource,
      bootstrapTo: [a],
      // a validator whose store write takes a while, like LevelDB under load
      validate: async (msg) => { most = Math.max(most, ++inFlight); try { await new Promise(resolve => setTimeout(resolve, 2)); return await store(msg) } finally { inFlight-- } }
    })
    await waitFor('b to hold all 200 of a', () => bSource.count() === 201)
    expect(b.net.stats()).toMatchObject({ syncReceived: 200, syncAccepted: 200 })
    expect(most).toBeGreaterThan(1)
    expect(most).toBeLessThanOrEqual(VALIDATION_WINDOW)
  })

  it('streams a history once to a node that catches up for longer than the accepting side waits before its own round', async () => {
    // the accepting side (a) starts its own round 1.5 s after a connection opens unless one ran:
    // while b's round still streams a's history, a second round would stream all of it again
    // (12 MiB: more than the stream buffers hold, so a's side of the round lasts as long as b's)
    const aSource = new MemorySyncSource()
    for (let seq = 0; seq < 400; seq++) aSource.add(REPO, 'key-a', seq, makeEnvelope(REPO, 'key-a', seq, 24_000))
    const a = await nodes.start({ source: aSource, syncIntervalMs: 0 })
    const bSource = new MemorySyncSource()
    const store = storingValidator(bSource, [])
    let chain: Promise<unknown> = Promise.resolve()
    const b = await nodes.start({
      source: bSource,
      bootstrapTo: [a],
      syncIntervalMs: 0,
      // a receiver slower than the wait: 400 envelopes at about 8 ms each, one after another
      validate: async (msg) => {
        const verdict = chain.then(async () => { await new Promise(resolve => setTimeout(resolve, 8)); return await store(msg) })
        chain = verdict.catch(() => {})
        return await verdict
      }
    })
    await waitFor('b to hold all 400 of a', () => bSource.count() === 400, 30_000)
    await new Promise(resolve => setTimeout(resolve, 2_000)) // past the accepting side's wait
    expect(b.net.stats()).toMatchObject({ syncReceived: 400, syncAccepted: 400, syncIgnored: 0 })
  })

  it('sends only what the peer lacks, and a fork at the same seq as evidence', async () => {
    const a = await nodes.start({ source: sourceWith('key-a', 50), syncIntervalMs: 0 })
    const bSource = new MemorySyncSource()
    const aLog = a.source.logs.get(`${REPO}\nkey-a`)
    for (const e of aLog?.entries.slice(0, 20) ?? []) bSource.add(REPO, 'key-a', e.seq, e.data)
    // key-f: both hold seq 0 and 1, with different envelopes at seq 1 (an equivocating signer)
    const f0 = makeEnvelope(REPO, 'key-f', 0)
    a.source.add(REPO, 'key-f', 0, f0)
    bSource.add(REPO, 'key-f', 0, f0)
    a.source.add(REPO, 'key-f', 1, makeEnvelope(REPO, 'key-f', 1))
    bSource.add(REPO, 'key-f', 1, makeEnvelope(REPO, 'key-f', 1))
    const b = await nodes.start({ source: bSource, bootstrapTo: [a], syncIntervalMs: 0 })
    await waitFor('b to catch up', () => b.source.count(REPO, 'key-a') === 50)
    await waitFor('the round to finish', () => b.net.stats().syncRounds >= 1)

    const bGot = b.seen.filter(m => m.via === 'sync').map(m => JSON.parse(new TextDecoder().decode(m.data)) as { keyid: string, seq: number })
    expect(bGot.filter(e => e.keyid === 'key-a').map(e => e.seq)).toEqual([...Array(30).keys()].map(i => i + 20))
    expect(bGot.filter(e => e.keyid === 'key-f').map(e => e.seq)).toEqual([1]) // a's other seq-1 envelope
    expect(a.seen.filter(m => m.via === 'sync').map(m => (JSON.parse(new TextDecoder().decode(m.data)) as { keyid: string }).keyid)).toEqual(['key-f'])
  })

  it('holds the sender back while the receiver is stalled (bounded memory)', async () => {
    class CountingSource extends MemorySyncSource {
      yielded = 0
      override async * envelopesAfter (repoId: string, keyid: string, afterSeq: number): AsyncIterable<Uint8Array> {
        for await (const data of super.envelopesAfter(repoId, keyid, afterSeq)) {
          this.yielded++
          yield data
        }
      }
    }
    const total = 4000 // about 8 MiB of frames
    const aSource = new CountingSource()
    for (let seq = 0; seq < total; seq++) aSource.add(REPO, 'key-a', seq, makeEnvelope(REPO, 'key-a', seq))
    const a = await nodes.start({ source: aSource })
    let release!: () => void
    const released = new Promise<void>(resolve => { release = resolve })
    const bSource = new MemorySyncSource()
    const store = storingValidator(bSource, [])
    const b = await nodes.start({ source: bSource, bootstrapTo: [a], validate: async (msg) => { await released; return await store(msg) } })
    await waitFor('the round to start', () => aSource.yielded > 0)
    // the sender has had its chance: it stopped reading its source (blocked on the stream)
    await waitForSteady('the sender to be held back', () => aSource.yielded, 500)
    // a has read what fits in b's reader (1 MiB), one yamux window (1 MiB) and one write batch:
    // about 1000 envelopes, not all 8 MiB
    expect(aSource.yielded).toBeLessThan(total / 2)
    release()
    await waitFor('b to receive everything', () => bSource.count() === total, 20_000)
    expect(b.net.stats().syncAccepted).toBe(total)
  })

  it('syncs periodically, and with peers reached by dial()', async () => {
    const a = await nodes.start({ source: sourceWith('key-a', 2), syncIntervalMs: 400 })
    const b = await nodes.start({ syncIntervalMs: 400 })
    await b.net.dial(a.net.multiaddrs()[0] as string)
    expect(b.net.connectedPeers()).toEqual([a.net.peerId])
    await waitFor('the connect round', () => b.source.count() === 2)
    // stored without gossip (e.g. received while b was busy): only a periodic round carries it
    a.source.add(REPO, 'key-a', 2, makeEnvelope(REPO, 'key-a', 2))
    await waitFor('a periodic round', () => b.source.count() === 3, 5000)
    await b.net.hangUp(a.net.peerId)
    await waitFor('the hang-up', () => b.net.connectedPeers().length === 0)
  })

  it('only exchanges repositories both sides carry', async () => {
    const aSource = sourceWith('key-a', 3)
    aSource.add('other', 'key-a', 0, makeEnvelope('other', 'key-a', 0))
    const a = await nodes.start({ source: aSource, repoIds: [REPO, 'other'] })
    const b = await nodes.start({ bootstrapTo: [a] })
    await waitFor('b to catch up', () => b.source.count() === 3)
    await waitFor('the round to finish', () => b.net.stats().syncRounds >= 1)
    expect(b.seen.some(m => m.repoId === 'other')).toBe(false)
  })

  it('resets the stream when a peer announces a frame over the cap', async () => {
    const a = await nodes.start({ source: sourceWith('key-a', 3) })
    const raw = await rawPeer()
    const stream = await raw.dialProtocol(multiaddr(a.net.multiaddrs()[0]), SYNC_PROTOCOL)
    stream.send(Uint8Array.of(0x80, 0x80, 0x40)) // varint 1 MiB, no payload needed
    const evt = await closed(stream, 5000)
    expect(evt.error).toBeDefined()
    await waitFor('a to count the failure', () => a.net.stats().syncFailures === 1)
    expect(a.net.stats().syncReceived).toBe(0)
  })

  it('fails a round whose peer closes without an end frame', async () => {
    const a = await nodes.start({ source: sourceWith('key-a', 3) })
    const raw = await rawPeer()
    const stream = await raw.dialProtocol(multiaddr(a.net.multiaddrs()[0]), SYNC_PROTOCOL)
    stream.send(encodeFrame(new TextEncoder().encode(JSON.stringify({ type: 'heads', repoIds: [REPO], heads: [] }))))
    await stream.close()
    await waitFor('a to count the failure', () => a.net.stats().syncFailures === 1)
    expect(a.net.stats().syncRounds).toBe(0)
  })

  it('fills a gap in a log (seq 3 missing below the head) from a peer that holds it', async () => {
    const a = await nodes.start({ source: sourceWith('key-a', 10), syncIntervalMs: 0 })
    const bSource = new MemorySyncSource()
    for (const e of a.source.logs.get(`${REPO}\nkey-a`)?.entries ?? []) if (e.seq !== 3) bSource.add(REPO, 'key-a', e.seq, e.data)
    expect((await bSource.heads())[0]).toMatchObject({ seq: 9, firstMissing: 3 })
    const b = await nodes.start({ source: bSource, bootstrapTo: [a], syncIntervalMs: 0 })
    await waitFor('b to fill the gap', () => b.source.count() === 10)
    expect((await b.source.heads())[0]?.firstMissing).toBeUndefined()
  })

  it('passes what one round brought on to the other peers at once (no wait for the periodic round)', async () => {
    // a -- b -- c in a line; a holds 30 envelopes that b and c lack; no periodic sync
    const a = await nodes.start({ source: sourceWith('key-a', 30), syncIntervalMs: 0 })
    const c = await nodes.start({ syncIntervalMs: 0 })
    const b = await nodes.start({ syncIntervalMs: 0, bootstrapTo: [c] })
    await waitFor('b and c to connect', () => b.net.connectedPeers().includes(c.net.peerId))
    await waitFor('the b-c connect round', () => b.net.stats().syncRounds >= 1)
    await b.net.dial(a.net.multiaddrs()[0] as string)
    await waitFor('c to get a\'s envelopes through b', () => c.source.count() === 30, 10_000)
    expect(c.net.connectedPeers()).not.toContain(a.net.peerId)
  })

  it('bans a peer that keeps sending malformed sync frames', async () => {
    const events: Array<{ event: string, fields: Record<string, unknown> }> = []
    const a = await nodes.start({ source: sourceWith('key-a', 3), log: (event, fields) => { events.push({ event, fields }) } })
    const raw = await rawPeer()
    const ma = multiaddr(a.net.multiaddrs()[0])
    for (let i = 0; i < 2; i++) {
      const stream = await raw.dialProtocol(ma, SYNC_PROTOCOL)
      stream.send(encodeFrame(new TextEncoder().encode('{"type":"heads", not json')))
      await closed(stream, 5000)
    }
    await waitFor('the ban', () => a.net.stats().peersBanned === 1)
    expect(a.net.stats().streamViolations).toBe(2)
    expect(events.find(e => e.event === 'peer-banned')?.fields).toMatchObject({ peer: raw.peerId.toString() })
    await waitFor('the hang-up', () => !a.net.connectedPeers().includes(raw.peerId.toString()))
    // kept out: a new connection is refused
    await expect(raw.dialProtocol(ma, SYNC_PROTOCOL, { signal: AbortSignal.timeout(5000) })).rejects.toThrow()
    expect(a.net.connectedPeers()).not.toContain(raw.peerId.toString())
  })

  it('ends a round at syncTimeoutMs even when the peer trickles frames, and counts it as stalled', async () => {
    const events: Array<{ event: string, fields: Record<string, unknown> }> = []
    const a = await nodes.start({ source: sourceWith('key-a', 3), syncTimeoutMs: 600, syncIdleTimeoutMs: 400, log: (event, fields) => { events.push({ event, fields }) } })
    const raw = await rawPeer()
    const stream = await raw.dialProtocol(multiaddr(a.net.multiaddrs()[0]), SYNC_PROTOCOL)
    // an empty heads frame with "more" every 100 ms: never idle for 400 ms, never done
    const trickle = setInterval(() => {
      try {
        stream.send(encodeFrame(new TextEncoder().encode(JSON.stringify({ type: 'heads', repoIds: [REPO], heads: [], more: true }))))
      } catch {}
    }, 100)
    try {
      const evt = await closed(stream, 5000)
      expect(evt.error).toBeDefined()
    } finally {
      clearInterval(trickle)
    }
    await waitFor('a to count the failure', () => a.net.stats().syncFailures === 1)
    expect(events.find(e => e.event === 'sync-failed')?.fields.error).toMatch(/timed out after 600 ms/)
    expect(events.find(e => e.event === 'peer-misbehaved')?.fields).toMatchObject({ kind: 'stalled', points: 5 })
    expect(a.net.stats().syncStalled).toBe(1)
  })
})

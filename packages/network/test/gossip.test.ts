import { afterEach, describe, expect, it } from 'vitest'
import { isQuorateError } from '@quorate/core'
import { REPO, TestNodes, makeEnvelope, waitFor } from './helpers.js'
import type { TestNode } from './helpers.js'

const nodes = new TestNodes()
afterEach(async () => { await nodes.stopAll() })

const text = (bytes: Uint8Array): string => new TextDecoder().decode(bytes)

/** A hub and two spokes that bootstrap to it, with every subscription known. */
async function star (opts: { hubRejectIf?: (text: string) => boolean, spokeMaxMessageBytes?: number, hubLog?: (event: string, fields: Record<string, unknown>) => void, aLog?: (event: string, fields: Record<string, unknown>) => void } = {}): Promise<{ hub: TestNode, a: TestNode, c: TestNode }> {
  const hub = await nodes.start({ rejectIf: opts.hubRejectIf, log: opts.hubLog })
  const a = await nodes.start({ bootstrapTo: [hub], maxMessageBytes: opts.spokeMaxMessageBytes, log: opts.aLog })
  const c = await nodes.start({ bootstrapTo: [hub] })
  expect(await hub.net.waitForTopicPeers(REPO, 2, 10_000)).toBe(true)
  expect(await a.net.waitForTopicPeers(REPO, 1, 10_000)).toBe(true)
  expect(await c.net.waitForTopicPeers(REPO, 1, 10_000)).toBe(true)
  // the hub relays at once only to its mesh; a message relayed while the mesh forms can miss a spoke
  await waitFor('the hub mesh to hold both spokes', () => hub.net.meshPeers(REPO).length === 2)
  return { hub, a, c }
}

describe('gossip', () => {
  it('delivers a message published on one node to the others, through validate', async () => {
    const { hub, a, c } = await star()
    const env = makeEnvelope(REPO, 'key-a', 0)
    const started = performance.now()
    const { recipients } = await a.net.publish(REPO, env)
    expect(recipients).toBeGreaterThanOrEqual(1)
    await waitFor('hub and c to receive', () => hub.source.count() === 1 && c.source.count() === 1)
    const latencyMs = performance.now() - started

    const atC = c.seen.find(m => m.via === 'gossip')
    expect(atC?.repoId).toBe(REPO)
    expect(atC?.from).toBe(hub.net.peerId) // c only hears it through the hub
    expect(Buffer.from(atC?.data ?? []).equals(Buffer.from(env))).toBe(true)
    expect(hub.seen.find(m => m.via === 'gossip')?.from).toBe(a.net.peerId)
    expect(hub.net.stats()).toMatchObject({ gossipReceived: 1, gossipAccepted: 1 })
    expect(a.seen).toHaveLength(0) // our own messages are not validated again
    expect(latencyMs).toBeLessThan(5000)
  })

  it('does not relay a message that validate rejects', async () => {
    const { hub, a, c } = await star({ hubRejectIf: t => t.startsWith('FORGED') })
    await a.net.publish(REPO, new TextEncoder().encode('FORGED envelope'))
    await a.net.publish(REPO, makeEnvelope(REPO, 'key-a', 0))
    await waitFor('c to receive the valid message', () => c.source.count() === 1)
    // two hub heartbeats after that: gossip (IHAVE) would have offered the forged message by now
    const beats = hub.net.stats().gossipHeartbeats
    await waitFor('two hub heartbeats', () => hub.net.stats().gossipHeartbeats >= beats + 2)

    expect(hub.seen.map(m => text(m.data)).filter(t => t.startsWith('FORGED'))).toHaveLength(1)
    expect(c.seen.some(m => text(m.data).startsWith('FORGED'))).toBe(false)
    expect(hub.net.stats()).toMatchObject({ gossipRejected: 1, gossipAccepted: 1 })
  })

  it('graylists and disconnects a peer that keeps sending forged messages', async () => {
    const events: string[] = []
    const aEvents: string[] = []
    const { hub, a } = await star({ hubRejectIf: t => t.startsWith('FORGED'), hubLog: (event) => { events.push(event) }, aLog: (event) => { aEvents.push(event) } })
    for (let i = 0; i < 4; i++) await a.net.publish(REPO, new TextEncoder().encode(`FORGED ${i}`))
    await waitFor('the hub to ban the forger', () => hub.net.stats().peersBanned === 1)
    await waitFor('the forger to be disconnected', () => !hub.net.connectedPeers().includes(a.net.peerId))
    expect(events).toContain('peer-banned')
    // a's bootstrap keeper redials (1 s backoff); the hub's connection gater keeps refusing it
    // (the dial completes on a's side and the hub closes it at once)
    const afterBan = aEvents.length
    await waitFor('a to redial the hub', () => aEvents.slice(afterBan).some(e => e === 'bootstrap-connected' || e === 'bootstrap-dial-failed'), 10_000)
    await waitFor('the redialled connection to be closed', () => !a.net.connectedPeers().includes(hub.net.peerId))
    expect(hub.net.connectedPeers()).not.toContain(a.net.peerId)
    expect(a.net.connectedPeers()).not.toContain(hub.net.peerId)
  })

  it('rejects a message larger than maxMessageBytes before validate sees it', async () => {
    // a allows 200 KiB so that it can send one; the hub keeps the 64 KiB default
    const { hub, a, c } = await star({ spokeMaxMessageBytes: 200 * 1024 })
    const big = new Uint8Array(100 * 1024).fill(0x41)
    await a.net.publish(REPO, big)
    await a.net.publish(REPO, makeEnvelope(REPO, 'key-a', 0))
    await waitFor('c to receive the small message', () => c.source.count() === 1)

    expect(hub.seen.some(m => m.data.byteLength > 65536)).toBe(false)
    expect(c.seen.some(m => m.data.byteLength > 65536)).toBe(false)
    expect(hub.net.stats()).toMatchObject({ gossipReceived: 2, gossipRejected: 1, gossipAccepted: 1 })

    // and our own publish refuses what peers would reject
    const err = await c.net.publish(REPO, big).catch((e: unknown) => e)
    expect(isQuorateError(err, 'NETWORK_FAILED')).toBe(true)
    expect((err as Error).message).toMatch(/exceeds maxMessageBytes \(65536\)/)
  })

  it('returns 0 recipients without throwing when nobody is subscribed', async () => {
    const lone = await nodes.start()
    expect(await lone.net.publish(REPO, makeEnvelope(REPO, 'key-a', 0))).toEqual({ recipients: 0 })
    expect(lone.net.topicPeers(REPO)).toEqual([])
    expect(await lone.net.waitForTopicPeers(REPO, 1, 200)).toBe(false)
  })

  it('publishes the same message again once a peer is there (nothing was marked seen)', async () => {
    const first = await nodes.start()
    const env = makeEnvelope(REPO, 'key-a', 0)
    expect((await first.net.publish(REPO, env)).recipients).toBe(0)
    const second = await nodes.start({ bootstrapTo: [first], sync: undefined })
    expect(await first.net.waitForTopicPeers(REPO, 1, 10_000)).toBe(true)
    expect((await first.net.publish(REPO, env)).recipients).toBe(1)
    await waitFor('the second node to receive it', () => second.source.count() === 1)
  })

  it('redials a bootstrap peer that went away and came back', async () => {
    const hub = await nodes.start()
    const spoke = await nodes.start({ bootstrapTo: [hub] })
    await waitFor('the spoke to connect', () => spoke.net.connectedPeers().includes(hub.net.peerId))
    const addr = hub.net.multiaddrs()[0] as string
    const hubKey = hub.peerKey
    await hub.net.stop()
    await waitFor('the spoke to notice', () => spoke.net.connectedPeers().length === 0)
    const port = addr.split('/')[4] as string
    const again = await nodes.start({ peerKey: hubKey, listen: [`/ip4/127.0.0.1/tcp/${port}`] })
    expect(again.net.peerId).toBe(hub.net.peerId)
    await waitFor('the spoke to redial', () => spoke.net.connectedPeers().includes(hub.net.peerId), 15_000)
  })

  it('bans a peer that floods past the rate limit, even with messages that are only ignored', async () => {
    const hub = await nodes.start({ gossipRatePerPeer: 10, validate: async () => 'ignore' })
    const flooder = await nodes.start({ bootstrapTo: [hub], gossipRatePerPeer: 100_000 })
    expect(await flooder.net.waitForTopicPeers(REPO, 1, 10_000)).toBe(true)
    for (let i = 0; i < 700 && flooder.net.topicPeers(REPO).length > 0; i++) await flooder.net.publish(REPO, makeEnvelope(REPO, 'k', i, 50))
    await waitFor('the hub to ban the flooder', () => hub.net.stats().peersBanned === 1 && !hub.net.connectedPeers().includes(flooder.net.peerId))
    expect(hub.net.stats().gossipAccepted + hub.net.stats().gossipRejected).toBe(0)
  })
})

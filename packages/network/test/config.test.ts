import { describe, expect, it } from 'vitest'
import { isQuorateError } from '@quorate/core'
import { createPeerKey, peerIdFromPeerKey, startNetwork } from '../src/index.js'
import { parseBootstrap, resolveNetworkConfig } from '../src/config.js'
import { createScoreParams, createScoreThresholds } from '../src/gossip-params.js'
import type { NetworkInit } from '../src/index.js'

async function init (overrides: Partial<NetworkInit> = {}): Promise<NetworkInit> {
  return {
    peerKey: await createPeerKey(),
    listen: ['/ip4/127.0.0.1/tcp/0'],
    bootstrap: [],
    repoIds: ['demo'],
    validate: async () => 'accept',
    ...overrides
  }
}

async function errorOf (promise: Promise<unknown>): Promise<unknown> {
  return await promise.then(() => undefined, (err: unknown) => err)
}

describe('configuration', () => {
  it('refuses a bootstrap entry without /p2p/<peer id>, naming the entry and the fix', async () => {
    const err = await errorOf(startNetwork(await init({ bootstrap: ['/ip4/127.0.0.1/tcp/4001'] })))
    expect(isQuorateError(err, 'CONFIG_INVALID')).toBe(true)
    expect((err as Error).message).toBe('network.bootstrap[0]: "/ip4/127.0.0.1/tcp/4001" has no /p2p/<peer id>; append the peer id that the other node\'s `quorate init` printed (…/p2p/12D3KooW…)')
  })

  it('says which address failed when the port is taken', async () => {
    const first = await startNetwork(await init())
    try {
      const port = (first.multiaddrs()[0] as string).split('/')[4] as string
      const err = await errorOf(startNetwork(await init({ listen: [`/ip4/127.0.0.1/tcp/${port}`] })))
      expect(isQuorateError(err, 'NETWORK_FAILED')).toBe(true)
      expect((err as Error).message).toMatch(new RegExp(`could not start the libp2p node on /ip4/127.0.0.1/tcp/${port}: .*ports free`))
    } finally {
      await first.stop()
    }
  })

  it('accepts bootstrap entries with a peer id', async () => {
    const id = peerIdFromPeerKey(await createPeerKey())
    expect(parseBootstrap([`/ip4/192.0.2.1/tcp/4001/p2p/${id}`])).toEqual([{ peerId: id, multiaddr: `/ip4/192.0.2.1/tcp/4001/p2p/${id}` }])
  })

  it.each([
    [{ bootstrap: ['not a multiaddr'] }, /network\.bootstrap\[0\]: "not a multiaddr" is not a valid multiaddr/],
    [{ listen: ['/ip4/127.0.0.1/tcp/x'] }, /network\.listen\[0\]/],
    [{ repoIds: ['https://git.example/x.git'] }, /network\.repoIds\[0\]: .* never a URL/],
    [{ maxMessageBytes: 0 }, /network\.maxMessageBytes: must be an integer between 1 and 1048576/],
    [{ maxSyncFrameBytes: 1000 }, /network\.maxSyncFrameBytes/]
  ])('refuses %o', async (overrides, message) => {
    let err: unknown
    try {
      resolveNetworkConfig(await init(overrides as Partial<NetworkInit>))
    } catch (e) {
      err = e
    }
    expect(isQuorateError(err, 'CONFIG_INVALID')).toBe(true)
    expect((err as Error).message).toMatch(message)
  })

  it('sizes sync frames to carry the largest message as base64', async () => {
    expect(resolveNetworkConfig(await init()).maxSyncFrameBytes).toBe(128 * 1024)
    expect(resolveNetworkConfig(await init({ maxMessageBytes: 512 * 1024 })).maxSyncFrameBytes).toBeGreaterThan(512 * 1024 * 4 / 3)
  })

  it('refuses a peer key that is not one', async () => {
    expect(() => peerIdFromPeerKey(new Uint8Array([1, 2, 3]))).toThrow(/not a protobuf-encoded libp2p private key/)
  })

  it('derives a stable Ed25519 peer id from the key', async () => {
    const key = await createPeerKey()
    expect(peerIdFromPeerKey(key)).toMatch(/^12D3KooW/)
    expect(peerIdFromPeerKey(key)).toBe(peerIdFromPeerKey(Uint8Array.from(key)))
  })
})

describe('gossip scoring', () => {
  it('passes gossipsub\'s own parameter validation, with colocation off only for loopback', () => {
    expect(createScoreParams(['/quorate/1/att/demo'], false).IPColocationFactorWeight).toBeLessThan(0)
    expect(createScoreParams(['/quorate/1/att/demo'], true).IPColocationFactorWeight).toBe(0)
    const topic = createScoreParams(['/quorate/1/att/demo'], false).topics['/quorate/1/att/demo']
    expect(topic?.meshMessageDeliveriesWeight).toBe(0)
    expect(topic?.invalidMessageDeliveriesWeight).toBeLessThan(0)
    expect(createScoreThresholds().graylistThreshold).toBe(-80)
  })

  it('three invalid messages take a fresh peer below the graylist threshold', () => {
    const topic = createScoreParams(['t'], false).topics.t
    const p4 = (n: number): number => n * n * (topic?.invalidMessageDeliveriesWeight ?? 0) * (topic?.topicWeight ?? 0)
    expect(p4(2)).toBeGreaterThan(createScoreThresholds().graylistThreshold)
    expect(p4(3)).toBeLessThan(createScoreThresholds().graylistThreshold)
  })
})

import { describe, it, expect } from 'vitest'
import { createPeerKey, startNetwork } from '../src/index.js'
import { REPO } from './helpers.js'

describe('announce addresses', () => {
  it('advertises the announce address (a node behind NAT) instead of its listen address', async () => {
    const net = await startNetwork({
      peerKey: await createPeerKey(),
      listen: ['/ip4/127.0.0.1/tcp/0'],
      announce: ['/dns4/builder.example.org/tcp/4001'],
      bootstrap: [],
      repoIds: [REPO],
      validate: async () => 'accept'
    })
    try {
      expect(net.multiaddrs()).toEqual([`/dns4/builder.example.org/tcp/4001/p2p/${net.peerId}`])
    } finally {
      await net.stop()
    }
  })
})

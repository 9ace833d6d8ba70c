import { describe, expect, it } from 'vitest'
import { BootstrapKeeper } from '../src/bootstrap-keeper.js'
import { waitFor } from './helpers.js'

const PEER = '12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'
const ADDR = `/ip4/127.0.0.1/tcp/4001/p2p/${PEER}`

/** A keeper whose dial "connects" and the peer hangs up at once (it banned us), recording when it dialled. */
function hangingUpPeer (opts: { stableMs: number }): { keeper: BootstrapKeeper, dials: number[] } {
  const dials: number[] = []
  const keeper: BootstrapKeeper = new BootstrapKeeper([{ peerId: PEER, multiaddr: ADDR }], {
    isConnected: () => false,
    isBanned: () => false,
    dial: async () => {
      dials.push(performance.now())
      keeper.onConnect(PEER)
      setTimeout(() => { keeper.onDisconnect(PEER) }, 1)
    },
    log: () => {}
  }, { minMs: 20, maxMs: 1000, dialTimeoutMs: 1000, stableMs: opts.stableMs })
  return { keeper, dials }
}

describe('bootstrap keeper', () => {
  it('backs off from a peer that hangs up at once instead of redialling it at the minimum delay forever', async () => {
    const { keeper, dials } = hangingUpPeer({ stableMs: 10_000 })
    keeper.start()
    try {
      await waitFor('six dials', () => dials.length >= 6, 10_000)
    } finally {
      keeper.stop()
    }
    const gaps = dials.slice(1).map((t, i) => t - (dials[i] as number))
    // 20, 40, 80, 160, 320 ms (plus timer slack): each gap at least the one before
    expect(gaps.length).toBeGreaterThanOrEqual(5)
    expect(gaps[4]).toBeGreaterThanOrEqual(300)
  })

  it('starts over at the minimum delay after a connection that lasted', async () => {
    const { keeper, dials } = hangingUpPeer({ stableMs: 0 })
    keeper.start()
    try {
      await waitFor('six dials', () => dials.length >= 6, 10_000)
    } finally {
      keeper.stop()
    }
    const gaps = dials.slice(1).map((t, i) => t - (dials[i] as number))
    expect(gaps.length).toBeGreaterThanOrEqual(5)
    // 20 ms each (timers may fire late on a busy machine; the median shows the delay did not grow)
    const median = [...gaps].sort((x, y) => x - y)[Math.floor(gaps.length / 2)] as number
    expect(median).toBeLessThan(150)
  })
})

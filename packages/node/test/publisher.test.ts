import { describe, it, expect } from 'vitest'
import { publisher } from '../src/publisher.js'
import { createNodeMetrics } from '../src/metrics.js'
import { memoryLogger, until } from './helpers.js'

/** A network stand-in with a peer count the test controls: publish reports how many peers received it. */
function fakePeers () {
  const sent: string[] = []
  let peers = 0
  let failing = false
  return {
    sent,
    set peers (n: number) { peers = n },
    set failing (f: boolean) { failing = f },
    network: {
      publish: async (_repoId: string, bytes: Uint8Array) => {
        if (failing) throw new Error('stream reset')
        sent.push(Buffer.from(bytes).toString())
        return { recipients: peers }
      }
    }
  }
}

describe('publisher', () => {
  it('keeps publishing an envelope until a peer received it, then stops', async () => {
    const net = fakePeers()
    const metrics = createNodeMetrics()
    const p = publisher({ retryIntervalMs: 10, maxTries: 1000 }, { network: net.network, metrics, logger: memoryLogger() })
    p.start()
    p.publish({ id: 'e1', repoId: 'hello', bytes: Buffer.from('e1') })
    await until(() => net.sent.length >= 3, 'three unanswered publish rounds')
    expect(p.pending()).toBe(1)
    net.peers = 2
    await until(() => p.pending() === 0, 'delivery')
    const delivered = net.sent.length
    await p.flush()
    await p.flush()
    expect(net.sent.length).toBe(delivered)
    expect(metrics.registry.render()).toMatch(/^quorate_publishes_total\{result="delivered"\} 1$/m)
    await p.stop()
  })

  it('leaves an envelope to sync after maxTries, counting errors as tries', async () => {
    const net = fakePeers()
    net.failing = true
    const p = publisher({ retryIntervalMs: 5, maxTries: 3 }, { network: net.network, metrics: createNodeMetrics(), logger: memoryLogger() })
    p.publish({ id: 'e1', repoId: 'hello', bytes: Buffer.from('e1') })
    await p.flush()
    expect(p.pending()).toBe(1)
    net.failing = false
    p.start()
    await until(() => p.pending() === 0, 'giving up')
    expect(net.sent).toEqual(['e1', 'e1'])
    await p.stop()
  })
})

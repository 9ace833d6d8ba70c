import { afterEach, describe, expect, it } from 'vitest'
import type { IncomingMessage, Verdict } from '../src/index.js'
import { MemorySyncSource, REPO, TestNodes, makeEnvelope, storingValidator, waitFor } from './helpers.js'

const nodes = new TestNodes()
afterEach(async () => { await nodes.stopAll() })

describe('sync flow control', () => {
  it('moves a history far larger than the stream buffers to a receiver slower than the sender, in one round', { timeout: 30_000 }, async () => {
    // ~10 MiB of envelopes against a receiver that yields on every one (as real validation does):
    // the reader must hold the sender back instead of letting it overrun the 4 MiB read buffer.
    const source = new MemorySyncSource()
    for (let seq = 0; seq < 6000; seq++) source.add(REPO, 'k'.repeat(64), seq, makeEnvelope(REPO, 'k'.repeat(64), seq))
    const holder = await nodes.start({ source, syncIntervalMs: 0 })
    const slowSource = new MemorySyncSource()
    const seen: IncomingMessage[] = []
    const store = storingValidator(slowSource, seen)
    const slow = async (msg: IncomingMessage): Promise<Verdict> => {
      await new Promise(resolve => setImmediate(resolve))
      return await store(msg)
    }
    const fresh = await nodes.start({ source: slowSource, validate: slow, bootstrapTo: [holder], syncIntervalMs: 0 })
    await waitFor('the whole history', () => slowSource.count() === 6000, 25_000)
    expect(fresh.net.stats().syncFailures).toBe(0)
    expect(holder.net.stats().syncFailures).toBe(0)
  })
})

import { describe, expect, it } from 'vitest'
import { QuorateError, TokenBuckets } from '../src/index.js'

describe('TokenBuckets', () => {
  it('lets a new key spend its burst, then ratePerSecond tokens a second', () => {
    const b = new TokenBuckets({ ratePerSecond: 10, burst: 20 })
    let ok = 0
    for (let i = 0; i < 50; i++) if (b.take('peer', 1000)) ok++
    expect(ok).toBe(20)
    expect(b.take('peer', 1000)).toBe(false)
    expect(b.take('peer', 1099)).toBe(false) // 0.99 tokens
    expect(b.take('peer', 1100)).toBe(true) // 1 token after 100 ms
    expect(b.take('peer', 1100)).toBe(false)
    // refills up to the burst, not beyond
    expect(b.tokens('peer', 1_000_000)).toBe(20)
  })

  it('keeps keys apart and forgets a key on request', () => {
    const b = new TokenBuckets({ ratePerSecond: 1, burst: 1 })
    expect(b.take('a', 0)).toBe(true)
    expect(b.take('a', 0)).toBe(false)
    expect(b.take('b', 0)).toBe(true)
    b.forget('a')
    expect(b.take('a', 0)).toBe(true)
  })

  it('takes a cost of several tokens only when all are there', () => {
    const b = new TokenBuckets({ ratePerSecond: 1, burst: 5 })
    expect(b.take('k', 0, 3)).toBe(true)
    expect(b.take('k', 0, 3)).toBe(false)
    expect(b.tokens('k', 0)).toBe(2) // the refused take cost nothing
    expect(b.take('k', 1000, 3)).toBe(true)
  })

  it('does not refill or drain when the clock steps back', () => {
    const b = new TokenBuckets({ ratePerSecond: 1, burst: 2 })
    expect(b.take('k', 10_000)).toBe(true)
    expect(b.take('k', 10_000)).toBe(true)
    expect(b.take('k', 5_000)).toBe(false)
    expect(b.take('k', 10_999)).toBe(false) // elapsed counts from 10 000, not from 5 000
    expect(b.take('k', 11_000)).toBe(true)
  })

  it('remembers at most maxKeys keys, dropping the least recently used', () => {
    const b = new TokenBuckets({ ratePerSecond: 1, burst: 1, maxKeys: 3 })
    for (const k of ['a', 'b', 'c']) expect(b.take(k, 0)).toBe(true)
    expect(b.take('a', 0)).toBe(false) // a is now the most recently used
    expect(b.take('d', 0)).toBe(true) // drops b
    expect(b.size).toBe(3)
    expect(b.take('a', 0)).toBe(false) // still remembered: still empty
    expect(b.take('c', 0)).toBe(false)
    expect(b.take('b', 0)).toBe(true) // forgotten: starts full again
    expect(b.size).toBe(3)
    // a million distinct keys never hold more than maxKeys
    const big = new TokenBuckets({ ratePerSecond: 1, burst: 1, maxKeys: 1000 })
    for (let i = 0; i < 1_000_000; i++) big.take(`k${i}`, i)
    expect(big.size).toBe(1000)
  })

  it('refuses nonsense options with a USAGE error', () => {
    expect(() => new TokenBuckets({ ratePerSecond: 0, burst: 1 })).toThrow(QuorateError)
    expect(() => new TokenBuckets({ ratePerSecond: 1, burst: 0.5 })).toThrow(/burst must be/)
    expect(() => new TokenBuckets({ ratePerSecond: 1, burst: 1, maxKeys: 0 })).toThrow(/maxKeys/)
  })
})

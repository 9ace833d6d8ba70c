/**
 * Token buckets keyed by a string: `ratePerSecond` refill, `burst` capacity.
 * (To be replaced by core's one token-bucket rate limiter, shared with the network.)
 */
export class TokenBuckets {
  private readonly buckets = new Map<string, { tokens: number, at: number }>()
  constructor (private readonly ratePerSecond: number, private readonly burst: number) {}
  take (key: string, now = Date.now()): boolean {
    let b = this.buckets.get(key)
    if (b === undefined) {
      if (this.buckets.size > 100_000) this.buckets.clear()
      this.buckets.set(key, b = { tokens: this.burst, at: now })
    }
    b.tokens = Math.min(this.burst, b.tokens + (now - b.at) / 1000 * this.ratePerSecond)
    b.at = now
    if (b.tokens < 1) return false
    b.tokens--
    return true
  }
}

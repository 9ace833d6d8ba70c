/**
 * Token buckets keyed by peer: `ratePerSecond` tokens a second, bursts up to twice that.
 * Time comes in as a parameter so the arithmetic is testable without a clock.
 */
export class PeerRateLimiter {
  private readonly rate: number
  private readonly burst: number
  private readonly buckets = new Map<string, { tokens: number, at: number }>()

  constructor (ratePerSecond: number) {
    this.rate = ratePerSecond
    this.burst = ratePerSecond * 2
  }

  /** Take one token for `key`; false when its bucket is empty. */
  take (key: string, nowMs: number): boolean {
    const bucket = this.buckets.get(key) ?? { tokens: this.burst, at: nowMs }
    bucket.tokens = Math.min(this.burst, bucket.tokens + (Math.max(0, nowMs - bucket.at) / 1000) * this.rate)
    bucket.at = nowMs
    const ok = bucket.tokens >= 1
    if (ok) bucket.tokens -= 1
    this.buckets.set(key, bucket)
    return ok
  }

  forget (key: string): void {
    this.buckets.delete(key)
  }
}

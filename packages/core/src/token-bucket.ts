import { QuorateError } from './errors.js'

/**
 * Token buckets keyed by a string (a peer id, a signer's keyid): each key gets `ratePerSecond`
 * tokens a second, up to `burst`, and a new key starts full. Pure: time comes in as a parameter
 * (milliseconds on any monotonic-enough clock), so the arithmetic is testable without a clock.
 *
 * The key map is bounded: past `maxKeys` the least recently used key is dropped. A bucket left
 * alone for burst / ratePerSecond seconds is full again, the same as a new one, so dropping the
 * least recently used key almost never forgives anything; a sender that spreads itself over
 * more keys than `maxKeys` to reset its own bucket has to be limited one level up (per peer).
 */
export interface TokenBucketOptions {
  /** Tokens added per second, > 0. */
  ratePerSecond: number
  /** Largest number of tokens a bucket holds (and a new key starts with), >= 1. */
  burst: number
  /** Most keys remembered at once. Default 100000. */
  maxKeys?: number
}

export const DEFAULT_MAX_BUCKET_KEYS = 100_000

interface Bucket { tokens: number, at: number }

export class TokenBuckets {
  readonly ratePerSecond: number
  readonly burst: number
  readonly maxKeys: number
  // Map iteration order is insertion order; take() re-inserts a key, so the first key is the least recently used.
  private readonly buckets = new Map<string, Bucket>()

  constructor (opts: TokenBucketOptions) {
    if (!(Number.isFinite(opts.ratePerSecond) && opts.ratePerSecond > 0)) {
      throw new QuorateError('USAGE', `token bucket: ratePerSecond must be a positive number, got ${String(opts.ratePerSecond)}`, { ratePerSecond: opts.ratePerSecond })
    }
    if (!(Number.isFinite(opts.burst) && opts.burst >= 1)) {
      throw new QuorateError('USAGE', `token bucket: burst must be a number of at least 1, got ${String(opts.burst)}`, { burst: opts.burst })
    }
    const maxKeys = opts.maxKeys ?? DEFAULT_MAX_BUCKET_KEYS
    if (!(Number.isSafeInteger(maxKeys) && maxKeys >= 1)) {
      throw new QuorateError('USAGE', `token bucket: maxKeys must be a positive integer, got ${String(opts.maxKeys)}`, { maxKeys: opts.maxKeys })
    }
    this.ratePerSecond = opts.ratePerSecond
    this.burst = opts.burst
    this.maxKeys = maxKeys
  }

  /** Take `cost` tokens (default 1) from `key`'s bucket at time `nowMs`; false (and nothing taken) when it holds fewer. */
  take (key: string, nowMs: number, cost = 1): boolean {
    const bucket = this.refill(key, nowMs)
    this.buckets.delete(key)
    this.buckets.set(key, bucket)
    if (this.buckets.size > this.maxKeys) {
      const oldest = this.buckets.keys().next().value
      if (oldest !== undefined) this.buckets.delete(oldest)
    }
    if (bucket.tokens < cost) return false
    bucket.tokens -= cost
    return true
  }

  /** Tokens `key` holds at `nowMs` (burst for a key never seen). Does not count as a use. */
  tokens (key: string, nowMs: number): number {
    const bucket = this.buckets.get(key)
    return bucket === undefined ? this.burst : this.level(bucket, nowMs)
  }

  /** Drop what is known about `key` (a disconnected peer): it starts full next time. */
  forget (key: string): void {
    this.buckets.delete(key)
  }

  /** Keys remembered now (at most maxKeys). */
  get size (): number {
    return this.buckets.size
  }

  private refill (key: string, nowMs: number): Bucket {
    const bucket = this.buckets.get(key)
    if (bucket === undefined) return { tokens: this.burst, at: nowMs }
    bucket.tokens = this.level(bucket, nowMs)
    // a clock that steps back neither refills nor drains
    bucket.at = Math.max(bucket.at, nowMs)
    return bucket
  }

  private level (bucket: Bucket, nowMs: number): number {
    return Math.min(this.burst, bucket.tokens + Math.max(0, nowMs - bucket.at) / 1000 * this.ratePerSecond)
  }
}

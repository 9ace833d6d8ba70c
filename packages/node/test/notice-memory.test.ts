import { describe, it, expect } from 'vitest'
import { noticeMemory } from '../src/notifier.js'
import { tempStore } from './helpers.js'

describe('notice memory', () => {
  it('keeps what was announced per commit in the store, across a reopen, bounded to the newest per bucket', async () => {
    const t = await tempStore()
    try {
      const m = noticeMemory(t.store, { buckets: 1, perBucket: 3 })
      for (const c of ['1', '2', '3', '4']) await m.remember('hello', c.repeat(40), { status: 'failed' })
      await m.remember('hello', '2'.repeat(40), { status: 'trusted', resultKey: 'r2' })
      const reopened = noticeMemory(await t.reopen(), { buckets: 1, perBucket: 3 })
      // '1' was the oldest of four when the bucket held three; '2' was touched last.
      expect(await reopened.recall('hello', '1'.repeat(40))).toBeUndefined()
      expect(await reopened.recall('hello', '2'.repeat(40))).toEqual({ status: 'trusted', resultKey: 'r2' })
      expect(await reopened.recall('hello', '4'.repeat(40))).toEqual({ status: 'failed' })
      expect(await reopened.recall('other', '4'.repeat(40))).toBeUndefined()
    } finally {
      await t.cleanup()
    }
  })
})

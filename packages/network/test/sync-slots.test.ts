import { describe, expect, it } from 'vitest'
import { syncSlots } from '../src/sync-slots.js'

describe('inbound sync slots', () => {
  it('limits rounds per peer and in total, and keeps the reserve for peers that delivered valid envelopes', () => {
    const slots = syncSlots({ open: 3, reserved: 2, perPeer: 2 })
    const a1 = slots.acquire('a')
    const a2 = slots.acquire('a')
    expect('release' in a1 && 'release' in a2).toBe(true)
    expect(slots.acquire('a')).toMatchObject({ refused: expect.stringMatching(/at most 2 per peer/) })
    expect(slots.acquire('b')).toMatchObject({ kind: 'open' })
    // the open slots are gone: an unproven peer is refused, a proven one gets a reserved slot
    expect(slots.acquire('c')).toMatchObject({ refused: expect.stringMatching(/kept for peers that delivered valid envelopes/) })
    slots.markProven('c')
    slots.markProven('d')
    expect(slots.acquire('c')).toMatchObject({ kind: 'reserved' })
    expect(slots.acquire('d')).toMatchObject({ kind: 'reserved' })
    slots.markProven('e')
    expect(slots.acquire('e')).toMatchObject({ refused: expect.stringMatching(/all 5 sync slots are taken/) })
    expect(slots.inUse()).toBe(5)
    // releasing frees the slot once, for anyone
    if (!('release' in a1)) throw new Error('unreachable')
    a1.release()
    a1.release()
    expect(slots.inUse()).toBe(4)
    expect(slots.inUse('a')).toBe(1)
    expect(slots.acquire('f')).toMatchObject({ kind: 'open' })
    expect(slots.acquire('g')).toHaveProperty('refused')
  })

  it('remembers a bounded number of proven peers', () => {
    const slots = syncSlots({ open: 0, reserved: 10, perPeer: 1, maxProvenPeers: 2 })
    slots.markProven('a')
    slots.markProven('b')
    slots.markProven('a') // a is now the most recent
    slots.markProven('c') // forgets b
    expect(['a', 'b', 'c'].map(p => slots.isProven(p))).toEqual([true, false, true])
  })
})

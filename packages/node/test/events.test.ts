import { describe, it, expect } from 'vitest'
import { EventBus } from '../src/events.js'

describe('EventBus', () => {
  it('numbers events, keeps a bounded history for reconnecting clients, and survives a throwing listener', () => {
    const bus = new EventBus(3)
    const got: number[] = []
    bus.subscribe(() => { throw new Error('broken listener') })
    const off = bus.subscribe((_e, id) => got.push(id))
    for (let i = 0; i < 5; i++) bus.emit({ type: 'build', repoId: 'r', commit: String(i), phase: 'started' })
    expect(got).toEqual([1, 2, 3, 4, 5])
    expect(bus.since(0).map(h => h.id)).toEqual([3, 4, 5])
    expect(bus.since(4).map(h => (h.event as { commit: string }).commit)).toEqual(['4'])
    off()
    bus.emit({ type: 'build', repoId: 'r', commit: '5', phase: 'started' })
    expect(got).toHaveLength(5)
  })
})

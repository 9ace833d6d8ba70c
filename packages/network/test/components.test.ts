import { describe, expect, it } from 'vitest'
import { peerBans } from '../src/peer-bans.js'
import { createStats } from '../src/stats.js'
import { validator } from '../src/validator.js'
import type { IncomingMessage, Verdict } from '../src/index.js'

const msg = (from: string): IncomingMessage => ({ repoId: 'demo', data: new Uint8Array([1]), from, via: 'sync' })

describe('validator (the one path into the node\'s validate)', () => {
  it('passes verdicts through, turns throws and bad verdicts into ignore, reports who delivered something valid, counts in flight', async () => {
    const logged: string[] = []
    const proven: string[] = []
    let release!: () => void
    const gate = new Promise<void>(resolve => { release = resolve })
    const answers: Record<string, () => Promise<Verdict>> = {
      good: async () => 'accept',
      forged: async () => 'reject',
      broken: async () => { throw new Error('disk full') },
      odd: async () => 'maybe' as Verdict,
      slow: async () => { await gate; return 'accept' }
    }
    const v = validator({ validate: async (m) => await (answers[m.from] as () => Promise<Verdict>)(), log: (event) => { logged.push(event) } }, { onAccepted: (peer) => { proven.push(peer) } })
    expect(await v.run(msg('good'))).toBe('accept')
    expect(await v.run(msg('forged'))).toBe('reject')
    expect(await v.run(msg('broken'))).toBe('ignore')
    expect(await v.run(msg('odd'))).toBe('ignore')
    expect(logged).toEqual(['validate-failed', 'validate-bad-verdict'])
    const slow = v.run(msg('slow'))
    expect(v.inFlight).toBe(1)
    release()
    expect(await slow).toBe('accept')
    expect(v.inFlight).toBe(0)
    expect(proven).toEqual(['good', 'slow'])
  })
})

describe('peer bans', () => {
  it('bans at 10 points, hangs up once, never bans itself, and keeps out only for banMs', async () => {
    const hungUp: string[] = []
    const stats = createStats()
    const bans = peerBans({ banMs: 200, selfId: 'me', log: () => {} }, { hangUp: async (peer) => { hungUp.push(peer) }, stats })
    bans.penalize('p', 'stalled', 'held a round')
    expect(bans.isBanned('p')).toBe(false)
    bans.penalize('p', 'stalled', 'held another round')
    expect(bans.isBanned('p')).toBe(true)
    bans.ban('p', { reason: 'again' })
    expect(hungUp).toEqual(['p'])
    expect(stats).toMatchObject({ peersBanned: 1, streamViolations: 2 })
    bans.ban('me', { reason: 'never' })
    expect(bans.isBanned('me')).toBe(false)
    await new Promise(resolve => setTimeout(resolve, 250))
    expect(bans.isBanned('p')).toBe(false)
  })
})

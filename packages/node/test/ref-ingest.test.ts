// Ref observations through ingest (real store): a `previous` that is not the signer's prior tip is
// refused once the log before it is held, observations cost one token per commit they list, and
// decisions notify only final bad answers, once per change.
import { describe, it, expect, afterEach } from 'vitest'
import { makeRefObservationStatement, makeFailureStatement, signStatement, sha256Hex, type LogPosition } from '@quorate/core'
import { ingest } from '../src/ingest.js'
import { decisions } from '../src/decisions.js'
import { EventBus } from '../src/events.js'
import { createNodeMetrics } from '../src/metrics.js'
import { builder, policyFor, tempStore, memoryLogger, COMMIT, RECIPE } from './helpers.js'

const alpha = builder('alpha', 'a', 1)
const beta = builder('beta', 'b', 2)
const policy = policyFor([alpha, beta])
const C = (n: number): string => n.toString(16).padStart(40, '0')
const cleanups: Array<() => Promise<void>> = []
afterEach(async () => { for (const c of cleanups.splice(0)) await c() })

async function setup (init: { signerRate?: number, signerBurst?: number } = {}) {
  const t = await tempStore()
  const events = new EventBus()
  const notices: Array<{ type: string, reason?: string }> = []
  const metrics = createNodeMetrics()
  const logger = memoryLogger()
  const d = decisions({ announceDelayMs: 5 }, { store: t.store, policy, events, logger, notify: n => notices.push(n), metrics })
  d.start()
  const i = ingest(init, { store: t.store, policy, decisions: d, events, metrics, notify: n => notices.push(n), logger })
  cleanups.push(async () => { await d.stop(); await t.cleanup() })
  return { store: t.store, i, d, notices }
}

const msg = (data: Uint8Array, via: 'gossip' | 'sync' = 'gossip') => ({ repoId: 'hello', data, from: 'peer-1', via })

/** One signer's log of ref moves, linked envelope to envelope. */
function refLog (moves: Array<{ commit: string, previous: string | null, introduced: string[], fastForward?: boolean }>): Uint8Array[] {
  let prev: string | null = null
  return moves.map((m, seq) => {
    const log: LogPosition = { seq, prev }
    const signed = signStatement(makeRefObservationStatement({ repoId: 'hello', ref: 'refs/heads/main', commit: m.commit, previous: m.previous, fastForward: m.fastForward ?? m.previous !== null, introduced: m.introduced, builderId: 'x', observedOn: '', log }), alpha.key)
    prev = signed.id
    return signed.bytes
  })
}

describe('ref observations in ingest', () => {
  it('refuses an observation whose previous is not the signer\'s prior tip, once the log before it is held', async () => {
    const { i, store } = await setup()
    const [first, second, lying] = refLog([
      { commit: C(2), previous: null, introduced: [C(2), C(1)] },
      { commit: C(3), previous: C(2), introduced: [C(3)] },
      { commit: C(5), previous: C(9), introduced: [C(5), C(4)] }
    ])
    expect(await i.validate(msg(first))).toBe('accept')
    // Out of order: the lie arrives before the observation it should follow; it cannot be judged yet.
    const early = await setup()
    expect(await early.i.validate(msg(lying, 'sync'))).toBe('accept')
    expect(await i.validate(msg(second))).toBe('accept')
    expect(await i.validate(msg(lying))).toBe('ignore')
    expect(i.stats.rejectReasons).toEqual({ 'ref-discontinuous': 1 })
    expect(await store.envelopesForCommit('hello', C(4))).toEqual([])
    // What it introduced is filed under each commit.
    expect(await store.envelopesForCommit('hello', C(1))).toHaveLength(1)
  })

  it('charges a ref observation one token per commit it lists (gossip only)', async () => {
    const { i } = await setup({ signerRate: 0.001, signerBurst: 3 })
    const [big] = refLog([{ commit: C(5), previous: null, introduced: [C(5), C(4), C(3), C(2), C(1)] }])
    expect(await i.validate(msg(big))).toBe('ignore')
    expect(await i.validate(msg(big, 'sync'))).toBe('accept')
  })
})

describe('decision notices', () => {
  function failure (b: typeof alpha, final: boolean, seq: number): Uint8Array {
    return signStatement(makeFailureStatement({
      repoId: 'hello', ref: 'refs/heads/main', commit: COMMIT, recipe: RECIPE, exitStatus: 3, timedOut: false, reason: 'make: no rule',
      logSha256: sha256Hex(''), fingerprint: {}, builderId: 'x', finishedOn: '', log: { seq, prev: seq === 0 ? null : 'e'.repeat(64) }, attempt: seq + 1, final
    }), b.key).bytes
  }

  it('notifies once, with the reason, when a commit turns failed; not while builders still retry', async () => {
    const { i, d, notices } = await setup()
    await i.validate(msg(failure(alpha, false, 0), 'sync'))
    await i.validate(msg(failure(beta, false, 0), 'sync'))
    await d.settled()
    expect(notices).toEqual([])
    await i.validate(msg(failure(alpha, true, 1), 'sync'))
    await d.settled()
    expect(notices).toEqual([expect.objectContaining({ type: 'failed', reason: expect.stringMatching(/make: no rule/) })])
    await i.validate(msg(failure(beta, true, 1), 'sync'))
    await d.settled()
    expect(notices).toHaveLength(1)
  })
})

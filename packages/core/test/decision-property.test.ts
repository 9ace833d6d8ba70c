import { describe, it, expect } from 'vitest'
import fc from 'fast-check'
import { decideQuorum, checkEnvelope, type DecisionStatus, type Policy } from '../src/index.js'
import { builder, policyFor, buildEnvelope, failureEnvelope, COMMIT, type TestBuilder } from './fixtures.js'

// Up to 5 organizations of up to 2 builders each.
const POOL: TestBuilder[][] = Array.from({ length: 5 }, (_, o) => Array.from({ length: 2 }, (_, i) => builder(`b${o}-${i}`, `org${o}`, 10 + o * 2 + i)))

// Signing is the slow part: each distinct envelope is signed once.
const signed = new Map<string, Uint8Array>()
const ids = new Set<string>()
function cached (key: string, make: () => Uint8Array): Uint8Array {
  let e = signed.get(key)
  if (e === undefined) {
    signed.set(key, e = make())
    const c = checkEnvelope(e, policyFor(POOL.flat()))
    if (c.verdict === 'accept') ids.add(c.verified.id)
  }
  return e
}

/** What one honest builder signs for the commit, in log order: some failed attempts, then a result, a final failure, or nothing yet. */
interface Plan { retries: number, end: 'result' | 'final' | 'none' }

const planArb = fc.record({ retries: fc.integer({ min: 0, max: 2 }), end: fc.constantFrom<Plan['end']>('result', 'final', 'none') })

function envelopesOf (b: TestBuilder, plan: Plan, result: string): Uint8Array[] {
  const out: Uint8Array[] = []
  for (let i = 0; i < plan.retries; i++) out.push(cached(`${b.name}/f${i}`, () => failureEnvelope(b, i, { attempt: i + 1, final: false })))
  if (plan.end === 'result') out.push(cached(`${b.name}/r${result}${plan.retries}`, () => buildEnvelope(b, result, { seq: plan.retries })))
  if (plan.end === 'final') out.push(cached(`${b.name}/F${plan.retries}`, () => failureEnvelope(b, plan.retries, { attempt: plan.retries + 1, final: true })))
  return out
}

const scenarioArb = (mode: 'majority' | 'unanimous') => fc.integer({ min: 1, max: 5 }).chain(orgCount => fc.record({
  orgCount: fc.constant(orgCount),
  threshold: fc.integer({ min: Math.floor(orgCount / 2) + 1, max: orgCount }),
  orgs: fc.array(fc.record({
    builders: fc.integer({ min: 1, max: 2 }),
    // honest organizations sign one result each; in majority mode two organizations may still
    // get different results (a non-reproducible build, a compromised CI), never one signer two
    result: mode === 'majority' ? fc.constantFrom('a', 'b') : fc.constant('a'),
    plans: fc.array(planArb, { minLength: 2, maxLength: 2 })
  }), { minLength: orgCount, maxLength: orgCount }),
  seed: fc.integer()
}))

function shuffle<T> (xs: T[], seed: number): T[] {
  const a = [...xs]
  let s = seed >>> 0
  for (let i = a.length - 1; i > 0; i--) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    const j = s % (i + 1);
    [a[i], a[j]] = [a[j], a[i]]
  }
  return a
}

function statuses (mode: 'majority' | 'unanimous', sc: { orgCount: number, threshold: number, orgs: Array<{ builders: number, result: string, plans: Plan[] }>, seed: number }): Array<{ status: DecisionStatus, trusted?: string }> {
  const members = sc.orgs.flatMap((o, i) => POOL[i].slice(0, o.builders))
  const policy: Policy = policyFor(members, { threshold: sc.threshold, mode })
  const envelopes = shuffle(sc.orgs.flatMap((o, i) => POOL[i].slice(0, o.builders).flatMap((b, j) => envelopesOf(b, o.plans[j], o.result))), sc.seed)
  const out: Array<{ status: DecisionStatus, trusted?: string }> = []
  for (let n = 0; n <= envelopes.length; n++) {
    const d = decideQuorum({ policy, repoId: 'hello', commit: COMMIT, envelopes: envelopes.slice(0, n), verifiedIds: ids })
    out.push({ status: d.status, trusted: d.trusted?.narSha256 })
  }
  return out
}

function assertOnlyLeavesPending (seq: Array<{ status: DecisionStatus, trusted?: string }>): void {
  expect(seq[0].status).toBe('pending')
  for (let i = 1; i < seq.length; i++) {
    const [prev, cur] = [seq[i - 1], seq[i]]
    if (prev.status === 'pending') continue
    // A final answer is never withdrawn: trusted stays trusted (same result) and disputed stays
    // disputed. The one move between final answers: failed (no support, nothing can reach the
    // threshold) becomes disputed when a late success from a slow organization adds support.
    // Both fail a deploy gate (exit 1).
    if (prev.status === 'failed' && cur.status === 'disputed') continue
    expect(cur).toEqual(prev)
  }
}

describe('decision status with honest builders (property)', () => {
  it('majority mode: moves only from pending to trusted, disputed or failed, and never back', () => {
    fc.assert(fc.property(scenarioArb('majority'), sc => assertOnlyLeavesPending(statuses('majority', sc))), { numRuns: 300 })
  })

  it('unanimous mode with reproducible builds: the same', () => {
    fc.assert(fc.property(scenarioArb('unanimous'), sc => {
      const seq = statuses('unanimous', sc)
      assertOnlyLeavesPending(seq)
      expect(seq.filter(s => s.status === 'trusted').every(s => s.trusted !== undefined)).toBe(true)
    }), { numRuns: 200 })
  })

  it('when every builder has answered, the answer is final', () => {
    fc.assert(fc.property(scenarioArb('majority'), sc => {
      const done = { ...sc, orgs: sc.orgs.map(o => ({ ...o, plans: o.plans.map(p => p.end === 'none' ? { ...p, end: 'final' as const } : p) })) }
      expect(statuses('majority', done).at(-1)!.status).not.toBe('pending')
    }), { numRuns: 200 })
  })
})

import type { Decision, DecisionStatus } from './quorum.js'

/** What a node remembers of the last decision it announced for a commit. */
export interface DecisionMemo { status: DecisionStatus, resultKey?: string }

/**
 * A notice worth paging someone for: a final answer that is bad news. `disputed` and `failed`
 * (DESIGN.md "The quorum decision", 4), and `contradicted`: a commit that was trusted is not any
 * more (a supporter turned out conflicted or an equivocator). Pending and trusted are not notices.
 */
export interface DecisionNotice { type: 'disputed' | 'failed' | 'contradicted', reason: string }

export function memoOf (d: Decision): DecisionMemo {
  return d.trusted !== undefined ? { status: d.status, resultKey: d.trusted.resultKey } : { status: d.status }
}

/**
 * The notice for a decision change, if any: one per change into a bad final answer, never for
 * transient states (a fast dissenter while a quorum is still reachable is `pending`: no notice).
 */
export function decisionNotice (previous: DecisionMemo | undefined, d: Decision): DecisionNotice | undefined {
  const why = (): string => {
    const parts = [d.summary]
    if (d.equivocators.length > 0) parts.push(`equivocating builders: ${d.equivocators.map(e => e.builder).join(', ')}`)
    if (d.conflictedOrgs.length > 0) parts.push(`organizations whose builders disagree: ${d.conflictedOrgs.map(c => c.org).join(', ')}`)
    return parts.join('; ')
  }
  if (previous?.status === 'trusted' && (d.status !== 'trusted' || d.trusted?.resultKey !== previous.resultKey)) {
    return { type: 'contradicted', reason: `was trusted, now ${d.status}: ${why()}` }
  }
  if (d.status === previous?.status) return undefined
  if (d.status === 'disputed') return { type: 'disputed', reason: why() }
  if (d.status === 'failed') return { type: 'failed', reason: why() }
  return undefined
}

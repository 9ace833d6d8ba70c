import { decideQuorum, decisionNotice, memoOf, type DecisionMemo, type Decision, type Policy, type VerifiedAttestation } from '@quorate/core'
import type { Store } from '@quorate/store'
import type { EventBus } from './events.js'
import type { Logger } from './logger.js'
import type { Counter, MetricsRegistry } from './metrics.js'
import type { Notice, NoticeMemory } from './notifier.js'

/**
 * A decision with what it rests on: every envelope stored for the commit and the repository's
 * equivocation proofs, as the store holds them (JSON bytes that passed the envelope checks when
 * they were stored), read once per computation.
 */
export interface CommitDecision {
  decision: Decision
  envelopes: Uint8Array[]
  proofs: Array<[Uint8Array, Uint8Array]>
  /** About how much memory this answer holds, with its serialized HTTP answer (what the answer cache counts). */
  bytes: number
}

/** Per counted builder: whether this node holds its log complete and linked up to the attestation that counted. */
export interface LogCompleteness { builder: string, keyid: string, seq: number, complete: boolean }

/** What decisions read from the store. */
export type DecisionReads = Pick<Store, 'envelopeBytesForCommit' | 'logPositions' | 'equivocationProofs' | 'logComplete'>

export interface DecisionsInit {
  /** Decisions are recomputed once per commit per this many ms, however many envelopes arrive. Default 50. */
  announceDelayMs?: number
  /**
   * Memory for decisions kept alone (commit lists, latest and digest lookups read these), in
   * bytes, least recently used dropped first. A decision is counted as 2 KiB plus half the bytes of
   * the envelopes it rests on (one of 14 envelopes holds about 8 KiB of heap). Default 128 MiB.
   */
  decisionCacheBytes?: number
  /**
   * Memory for whole one-commit answers (the decision with its stored envelopes and proofs, and
   * the HTTP API's serialized answer), in bytes, least recently used dropped first. Default 64 MiB.
   */
  answerCacheBytes?: number
}

export interface DecisionsComponents {
  store: DecisionReads
  policy: Policy
  events: EventBus
  logger: Logger
  notify: (notice: Omit<Notice, 'node' | 'time'>) => void
  /** What was announced per commit across restarts (the store); without it, only since this start. */
  memory?: NoticeMemory
  metrics?: { registry: MetricsRegistry, decisions?: Counter }
}

/**
 * Decides, caches, invalidates and announces. `decide` answers from a cache that is dropped
 * for a commit when a new envelope for it is stored, for a whole repository when an
 * equivocation proof is stored (a proof changes every commit of that repository), and for
 * everything when the policy changes. Changed decisions are logged, announced on the event bus
 * and, when a commit turns disputed, notified. The HTTP API and the notifier read it.
 */
export interface Decisions {
  /** The decision with every envelope and proof it rests on (the one-commit route), from a cache bounded by memory. */
  decide: (repoId: string, commit: string) => Promise<CommitDecision>
  /** Just the decision, from a larger cache (commit lists, latest, digest lookups). */
  decision: (repoId: string, commit: string) => Promise<Decision>
  /** Whether this node holds the logs of the counted builders complete up to their votes (no envelopes read again). */
  logCompleteness: (d: CommitDecision) => Promise<LogCompleteness[]>
  /** A verified envelope was stored: the decisions of its commits (a ref observation's tip and the commits it introduced) are recomputed and announced if they changed. */
  envelopeAdded: (v: VerifiedAttestation) => void
  /** An equivocation proof was stored for this repository. */
  proofAdded: (repoId: string, commit: string) => void
  /**
   * A number that changes whenever what the ref observations of `repoId` say may have changed
   * (a new observation or equivocation proof, a policy change): views derived from them
   * (timelines, latest commits) can be cached under it.
   */
  refEpoch: (repoId: string) => number
  /** The policy changed: every cached decision is dropped. */
  policyChanged: (policy: Policy) => void
  /** Commits by the latest status this node announced since it started. */
  statusCounts: () => Record<string, number>
  /** Resolves when every scheduled announcement is done (tests wait on this). */
  settled: () => Promise<void>
  start: () => void
  stop: () => Promise<void>
}

/**
 * Signatures of envelopes read from this node's own store are not checked again: every envelope
 * goes into the store as a VerifiedAttestation (Store.putEnvelope's type; ingest, the own log and
 * own-log recovery all check first), its signature was checked under the key its keyid names,
 * and a keyid names one public key forever. Membership, revocation, recipe and everything else
 * is still checked against the current policy on every decision. (Clients such as
 * `quorate verify` never rely on this: they check every signature themselves.)
 */
const STORED_SIGNATURES_CHECKED = { has: (_id: string): boolean => true }

/**
 * Promises by key, least recently used dropped while the entries cost more than `budget`; an
 * entry's cost is known once its promise resolves (`costOf`). A rejected promise is forgotten.
 */
class Lru<T> {
  private readonly map = new Map<string, { p: Promise<T>, cost: number }>()
  private total = 0
  constructor (private readonly budget: number, private readonly costOf: (v: T) => number = () => 1) {}
  get (k: string): Promise<T> | undefined {
    const e = this.map.get(k)
    if (e !== undefined) { this.map.delete(k); this.map.set(k, e) }
    return e?.p
  }

  set (k: string, p: Promise<T>): void {
    this.delete(k)
    const e = { p, cost: 0 }
    this.map.set(k, e)
    p.then(v => {
      if (this.map.get(k) !== e) return
      e.cost = this.costOf(v)
      this.total += e.cost
      this.evict()
    }, () => { if (this.map.get(k) === e) this.delete(k) })
  }

  private evict (): void {
    for (const [k, e] of this.map) {
      if (this.total <= this.budget || this.map.size <= 1) return
      this.map.delete(k)
      this.total -= e.cost
    }
  }

  delete (k: string): void {
    const e = this.map.get(k)
    if (e === undefined) return
    this.map.delete(k)
    this.total -= e.cost
  }

  deleteWhere (f: (k: string) => boolean): void { for (const k of [...this.map.keys()]) if (f(k)) this.delete(k) }
  clear (): void { this.map.clear(); this.total = 0 }
}

function parseEnvelopeJson (bytes: Uint8Array): unknown {
  return JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'))
}

export function decisions (init: DecisionsInit, c: DecisionsComponents): Decisions {
  const { store, events, logger } = c
  let policy = c.policy
  const delay = init.announceDelayMs ?? 50
  /** Whole answers, bounded by memory. */
  const answers = new Lru<CommitDecision>(init.answerCacheBytes ?? 64 * 1024 * 1024, d => d.bytes)
  /** Decisions alone, bounded by memory. */
  const decisionCache = new Lru<{ decision: Decision, bytes: number }>(init.decisionCacheBytes ?? 128 * 1024 * 1024, x => x.bytes)
  // d.bytes counts each envelope 3 times (see compute): 2 KiB plus half the envelopes' bytes
  const light = (d: CommitDecision): { decision: Decision, bytes: number } => ({ decision: d.decision, bytes: 2048 + Math.round(d.bytes / 6) })
  /** Per repository, its equivocation proofs as stored and parsed (every decision of the repository reads them). */
  const proofCache = new Map<string, Promise<{ stored: Array<[Uint8Array, Uint8Array]>, parsed: Array<[object, object]> }>>()
  const completeLogs = new WeakMap<CommitDecision, LogCompleteness[]>()
  const refEpochs = new Map<string, number>()
  let epochBase = 0
  const bumpRefEpoch = (repoId: string): void => { refEpochs.set(repoId, (refEpochs.get(repoId) ?? 0) + 1) }
  /** What was last announced per commit (the newest 10,000), so only changes are announced. */
  const announced = new Map<string, { sig: string, status: string, memo: DecisionMemo }>()
  const due = new Set<string>()
  let timer: NodeJS.Timeout | undefined
  let announcing: Promise<void> = Promise.resolve()
  let stopping = false

  function proofsOf (repoId: string): Promise<{ stored: Array<[Uint8Array, Uint8Array]>, parsed: Array<[object, object]> }> {
    let p = proofCache.get(repoId)
    if (p === undefined) {
      p = store.equivocationProofs(repoId).then(proofs => ({
        stored: proofs.map(x => x.envelopes),
        parsed: proofs.map(x => [parseEnvelopeJson(x.envelopes[0]) as object, parseEnvelopeJson(x.envelopes[1]) as object])
      }))
      const mine = p
      proofCache.set(repoId, mine)
      mine.catch(() => { if (proofCache.get(repoId) === mine) proofCache.delete(repoId) })
    }
    return p
  }

  async function compute (repoId: string, commit: string): Promise<CommitDecision> {
    // One range read and one multi-get per commit; the repository's proofs are read once until one is added.
    const [stored, proofs] = await Promise.all([store.envelopeBytesForCommit(repoId, commit), proofsOf(repoId)])
    const envelopes: Uint8Array[] = []
    const parsed: object[] = []
    let bytes = 8192
    for (const s of stored) {
      envelopes.push(s.bytes)
      parsed.push(parseEnvelopeJson(s.bytes) as object)
      // the bytes, their copy in the serialized answer, and the parsed decision's share
      bytes += 3 * s.bytes.byteLength
    }
    for (const [a, b] of proofs.stored) bytes += a.byteLength + b.byteLength
    const decision = decideQuorum({ policy, repoId, commit, envelopes: parsed, equivocationProofs: proofs.parsed, verifiedIds: STORED_SIGNATURES_CHECKED })
    return { decision, envelopes, proofs: proofs.stored, bytes }
  }

  function decide (repoId: string, commit: string): Promise<CommitDecision> {
    const k = `${repoId}@${commit}`
    const hit = answers.get(k)
    if (hit !== undefined) return hit
    const p = compute(repoId, commit)
    answers.set(k, p)
    decisionCache.set(k, p.then(light))
    return p
  }

  function decision (repoId: string, commit: string): Promise<Decision> {
    const k = `${repoId}@${commit}`
    const hit = decisionCache.get(k) ?? answers.get(k)?.then(light)
    if (hit !== undefined) return hit.then(x => x.decision)
    const p = compute(repoId, commit).then(light)
    decisionCache.set(k, p)
    return p.then(x => x.decision)
  }

  async function logCompleteness (d: CommitDecision): Promise<LogCompleteness[]> {
    const known = completeLogs.get(d)
    if (known !== undefined) return known
    const { repoId } = d.decision
    const out: LogCompleteness[] = []
    const { votes } = d.decision
    const seqs = await store.logPositions(votes.map(v => ({ id: v.envelopeId, keyid: v.keyid })))
    for (const [i, v] of votes.entries()) {
      const seq = seqs[i]
      if (seq === undefined) continue
      out.push({ builder: v.builder, keyid: v.keyid, seq, complete: await store.logComplete(repoId, v.keyid, seq) })
    }
    // A log found complete up to a position stays so (the store's linked prefix only grows); an
    // incomplete one may be completed by an envelope of another commit, so it is asked again.
    if (out.every(l => l.complete)) completeLogs.set(d, out)
    return out
  }

  function drop (repoId: string, commit: string): void {
    const k = `${repoId}@${commit}`
    answers.delete(k)
    decisionCache.delete(k)
  }

  function schedule (repoId: string, commit: string): void {
    due.add(`${repoId}@${commit}`)
    timer ??= setTimeout(() => {
      timer = undefined
      const keys = [...due]
      due.clear()
      announcing = announcing.then(async () => {
        for (const k of keys) {
          if (stopping) return
          const at = k.indexOf('@')
          await announce(k.slice(0, at), k.slice(at + 1)).catch(err => logger.error('decision failed', { error: (err as Error).message }))
        }
      })
    }, delay)
  }

  async function announce (repoId: string, commit: string): Promise<void> {
    const { decision } = await decide(repoId, commit)
    const k = `${repoId}@${commit}`
    const sig = `${decision.status}/${decision.trusted?.resultKey ?? ''}/${decision.results.map(r => r.supportingOrgs.length).join(',')}`
    const was = announced.get(k)
    if (was?.sig === sig) return
    // After a restart, what was announced before it (the notice memory in the store) decides
    // whether this is a change: a notice is not sent twice, and a change while the node was down counts.
    const previous = was?.memo ?? await c.memory?.recall(repoId, commit).catch(err => { logger.warn('notice memory unreadable', { error: (err as Error).message }); return undefined })
    const notice = decisionNotice(previous, decision)
    const memo = memoOf(decision)
    announced.delete(k)
    announced.set(k, { sig, status: decision.status, memo })
    if (announced.size > 10_000) announced.delete(announced.keys().next().value as string)
    c.metrics?.decisions?.inc({ status: decision.status })
    // Only final bad answers page anyone, once per change (a pending disagreement does not).
    if (notice !== undefined) c.notify({ type: notice.type, repoId, commit, summary: `${decision.status}: ${decision.summary}`, reason: notice.reason })
    await c.memory?.remember(repoId, commit, memo).catch(err => logger.warn('notice memory not written', { error: (err as Error).message }))
    logger.info('decision', {
      repo: repoId,
      commit: commit.slice(0, 12),
      status: decision.status,
      digest: decision.trusted?.narSha256,
      agreed: decision.trusted?.supportingOrgs.join(','),
      dissent: decision.dissenters.map(d => `${d.builder}:${d.narSha256.slice(0, 12)}`).join(',') || undefined
    })
    events.emit({ type: 'decision', repoId, commit, status: decision.status, narSha256: decision.trusted?.narSha256, supportingOrgs: decision.trusted?.supportingOrgs, summary: decision.summary })
  }

  function statusCounts (): Record<string, number> {
    const counts: Record<string, number> = { trusted: 0, pending: 0, disputed: 0, failed: 0 }
    for (const { status } of announced.values()) counts[status] = (counts[status] ?? 0) + 1
    return counts
  }

  c.metrics?.registry.collect('quorate_decisions', 'Commits by the latest decision status this node computed since it started.', 'gauge',
    () => Object.entries(statusCounts()).map(([status, n]) => [{ status }, n]))

  return {
    decide,
    decision,
    logCompleteness,
    envelopeAdded (v) {
      const a = v.attestation
      if (a.kind === 'ref') bumpRefEpoch(a.repoId)
      // A ref observation counts for its tip and for every commit the move introduced.
      for (const commit of new Set(a.kind === 'ref' ? [a.commit, ...a.introduced] : [a.commit])) {
        drop(a.repoId, commit)
        schedule(a.repoId, commit)
      }
    },
    proofAdded (repoId, commit) {
      bumpRefEpoch(repoId)
      proofCache.delete(repoId)
      answers.deleteWhere(k => k.startsWith(`${repoId}@`))
      decisionCache.deleteWhere(k => k.startsWith(`${repoId}@`))
      schedule(repoId, commit)
    },
    policyChanged (next) {
      policy = next
      epochBase++
      proofCache.clear()
      answers.clear()
      decisionCache.clear()
    },
    refEpoch: (repoId) => epochBase * 1_000_000_000 + (refEpochs.get(repoId) ?? 0),
    statusCounts,
    async settled () {
      while (timer !== undefined || due.size > 0) await new Promise(resolve => setTimeout(resolve, delay))
      await announcing
    },
    start () { stopping = false },
    async stop () {
      stopping = true
      clearTimeout(timer)
      timer = undefined
      await announcing
    }
  }
}

import { TokenBuckets, precheckEnvelope, signatureChecked, verifyEd25519, type EnvelopeCheck, type Policy, type VerifiedAttestation } from '@quorate/core'
import type { Store } from '@quorate/store'
import type { IncomingMessage, Verdict } from '@quorate/network'
import type { Decisions } from './decisions.js'
import type { EventBus } from './events.js'
import type { Logger } from './logger.js'
import type { NodeMetrics } from './metrics.js'
import type { Notice } from './notifier.js'
import type { VerifyPool } from './verify-pool.js'

/** What ingest counts, served in `/v1/status` as `stats.received` and `stats.rejectReasons` (by check code). */
export interface IngestStats {
  received: Record<Verdict, number>
  rejectReasons: Record<string, number>
}

export interface IngestInit {
  /** Per-signer budget on gossip: envelopes per second refilled, and the burst. Default 50/s, 500. */
  signerRate?: number
  signerBurst?: number
}

export interface IngestComponents {
  store: Pick<Store, 'putEnvelope' | 'priorRefCommit' | 'logComplete'>
  policy: Policy
  decisions: Pick<Decisions, 'envelopeAdded' | 'proofAdded'>
  events: EventBus
  metrics: Pick<NodeMetrics, 'attestations' | 'gossipLatency'>
  notify: (notice: Omit<Notice, 'node' | 'time'>) => void
  logger: Logger
  /** Counters to update; a fresh object when not given. */
  stats?: IngestStats
  /**
   * Where signatures are verified (a pool of worker threads, see verify-pool.ts); default: core's
   * `verifyEd25519` on this thread. Either way the one rule, node:crypto's RFC 8032 Ed25519.
   */
  verifier?: Pick<VerifyPool, 'verify'>
}

/**
 * Where an incoming envelope (from gossip or sync) is validated: checked against the policy
 * (core's `checkEnvelope`), budgeted per signer on gossip, stored before it is accepted (so
 * relays only carry what this node kept), then handed to decisions. Its verdict maps onto
 * gossipsub's Accept / Reject / Ignore.
 */
export interface Ingest {
  validate: (msg: IncomingMessage) => Promise<Verdict>
  readonly stats: IngestStats
}

/** Exact envelopes remembered as held (see `held` in ingest): about 250 bytes each. */
const HELD_MAX = 32_768

export function ingest (init: IngestInit, c: IngestComponents): Ingest {
  const { store, metrics, events, logger } = c
  const stats: IngestStats = c.stats ?? { received: { accept: 0, reject: 0, ignore: 0 }, rejectReasons: {} }
  // An honest builder signs a few envelopes per commit; a member key flooding the network is
  // throttled here (sync still delivers what gossip dropped, at its own pace).
  const signerBudget = new TokenBuckets({ ratePerSecond: init.signerRate ?? 50, burst: init.signerBurst ?? 500 })
  const policy = c.policy
  const verifier = c.verifier

  /**
   * Exact envelopes (signer, id and signature) this node holds, newest last: a copy arriving again
   * (from two sync rounds at once, or by gossip and sync) is a duplicate without its signature
   * being verified again or the store being asked. Only what the store answered for (stored, or
   * already held) enters; bounded, the store stays the truth.
   */
  const held = new Set<string>()
  /** The same for copies in validation right now: resolves with whether the store took it. */
  const inFlight = new Map<string, Promise<boolean>>()

  function refused (r: Exclude<EnvelopeCheck, { verdict: 'accept' }>, msg: IncomingMessage): Verdict {
    stats.received[r.verdict]++
    stats.rejectReasons[r.code] = (stats.rejectReasons[r.code] ?? 0) + 1
    metrics.attestations.inc({ verdict: r.verdict === 'reject' ? 'rejected' : 'ignored', reason: r.code })
    logger.debug('envelope refused', { verdict: r.verdict, code: r.code, reason: r.reason, from: msg.from, via: msg.via })
    return r.verdict
  }

  function duplicate (): Verdict {
    stats.received.ignore++
    metrics.attestations.inc({ verdict: 'ignored', reason: 'duplicate' })
    return 'ignore'
  }

  async function validate (msg: IncomingMessage): Promise<Verdict> {
    // core's checkEnvelope in two steps: everything but the signature, then the signature (by the
    // verifier: off this thread when it is a pool)
    const pre = precheckEnvelope(msg.data, policy, { repoId: msg.repoId })
    if (pre.verdict !== 'signature') return refused(pre, msg)
    const exact = pre.parsed.keyid + pre.parsed.id + pre.parsed.envelope.signatures[0].sig
    if (held.has(exact)) return duplicate()
    const earlier = inFlight.get(exact)
    if (earlier !== undefined && await earlier) return duplicate()
    let settle!: (taken: boolean) => void
    const mine = new Promise<boolean>(resolve => { settle = resolve })
    inFlight.set(exact, mine)
    let taken = false
    try {
      const { key, parsed } = pre
      const valid = verifier === undefined ? verifyEd25519(key.publicKey, parsed.pae, parsed.signature) : await verifier.verify(key.publicKey, parsed.pae, parsed.signature)
      const checked = signatureChecked(pre, valid)
      if (checked.verdict !== 'accept') return refused(checked, msg)
      const out = await accept(checked.verified, msg)
      taken = out.taken
      return out.verdict
    } finally {
      if (inFlight.get(exact) === mine) inFlight.delete(exact)
      settle(taken)
      if (taken) {
        held.add(exact)
        if (held.size > HELD_MAX) held.delete(held.values().next().value!)
      }
    }
  }

  /** A verified envelope: budgeted, checked for ref continuity, stored, then announced. `taken`: the store holds it now. */
  async function accept (v: VerifiedAttestation, msg: IncomingMessage): Promise<{ verdict: Verdict, taken: boolean }> {
    // A ref observation costs one token per commit it lists: a member key cannot flood the
    // store's commit index with huge `introduced` lists faster than with many envelopes.
    const cost = v.attestation.kind === 'ref' ? Math.max(1, v.attestation.introduced.length) : 1
    if (msg.via === 'gossip' && !signerBudget.take(v.keyid, Date.now(), cost)) {
      stats.received.ignore++
      metrics.attestations.inc({ verdict: 'ignored', reason: 'signer-rate-limit' })
      return { verdict: 'ignore', taken: false }
    }
    const discontinuous = await refDiscontinuity(v)
    if (discontinuous !== undefined) {
      stats.received.ignore++
      stats.rejectReasons['ref-discontinuous'] = (stats.rejectReasons['ref-discontinuous'] ?? 0) + 1
      metrics.attestations.inc({ verdict: 'ignored', reason: 'ref-discontinuous' })
      logger.warn('ref observation refused', { builder: v.builder, seq: v.attestation.log.seq, reason: discontinuous })
      return { verdict: 'ignore', taken: false }
    }
    const out = await store.putEnvelope(v, msg.data)
    if (out.status === 'duplicate') return { verdict: duplicate(), taken: true }
    stats.received.accept++
    metrics.attestations.inc({ verdict: 'accepted', reason: msg.via })
    const a = v.attestation
    const signedAt = Date.parse(a.kind === 'ref' ? a.observedOn : a.finishedOn)
    if (Number.isFinite(signedAt)) metrics.gossipLatency.observe(Math.max(0, Date.now() - signedAt) / 1000, { via: msg.via })
    if (out.status === 'fork') {
      logger.warn('equivocation', { repo: a.repoId, builder: v.builder, seq: a.log.seq, hint: 'two different envelopes at one log position: proof stored' })
      events.emit({ type: 'equivocation', repoId: a.repoId, keyid: v.keyid, builder: v.builder })
      c.notify({ type: 'equivocation', repoId: a.repoId, commit: a.commit, builder: v.builder, summary: `builder "${v.builder}" signed two different envelopes at position ${a.log.seq} of its log` })
      c.decisions.proofAdded(a.repoId, a.commit)
    }
    events.emit({ type: 'attestation', repoId: a.repoId, commit: a.commit, envelopeId: v.id, builder: v.builder, kind: a.kind, via: msg.via })
    c.decisions.envelopeAdded(v)
    return { verdict: 'accept', taken: true }
  }

  /**
   * DESIGN.md "The attestation": a ref observation's `previous` must be the tip its signer last
   * signed for that ref. Checked once this node holds the signer's log up to the position before
   * (an earlier gap may still be filled by sync), so a signer cannot rewrite where a ref came from.
   */
  async function refDiscontinuity (v: VerifiedAttestation): Promise<string | undefined> {
    const a = v.attestation
    if (a.kind !== 'ref') return undefined
    if (a.log.seq > 0 && !await store.logComplete(a.repoId, v.keyid, a.log.seq - 1)) return undefined
    const prior = await store.priorRefCommit(a.repoId, a.ref, v.keyid, a.log.seq)
    if (prior === a.previous) return undefined
    return `previous ${a.previous ?? 'null'} is not the signer's prior tip ${prior ?? '(none)'} of ${a.ref}`
  }

  return { validate, stats }
}

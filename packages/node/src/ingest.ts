import { TokenBuckets, checkEnvelope, type Policy } from '@quorate/core'
import type { Store } from '@quorate/store'
import type { IncomingMessage, Verdict } from '@quorate/network'
import type { Decisions } from './decisions.js'
import type { EventBus } from './events.js'
import type { Logger } from './logger.js'
import type { NodeMetrics } from './metrics.js'
import type { Notice } from './notifier.js'

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
  store: Pick<Store, 'putEnvelope'>
  policy: Policy
  decisions: Pick<Decisions, 'envelopeAdded' | 'proofAdded'>
  events: EventBus
  metrics: Pick<NodeMetrics, 'attestations' | 'gossipLatency'>
  notify: (notice: Omit<Notice, 'node' | 'time'>) => void
  logger: Logger
  /** Counters to update; a fresh object when not given. */
  stats?: IngestStats
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

export function ingest (init: IngestInit, c: IngestComponents): Ingest {
  const { store, metrics, events, logger } = c
  const stats: IngestStats = c.stats ?? { received: { accept: 0, reject: 0, ignore: 0 }, rejectReasons: {} }
  // An honest builder signs a few envelopes per commit; a member key flooding the network is
  // throttled here (sync still delivers what gossip dropped, at its own pace).
  const signerBudget = new TokenBuckets({ ratePerSecond: init.signerRate ?? 50, burst: init.signerBurst ?? 500 })
  const policy = c.policy

  async function validate (msg: IncomingMessage): Promise<Verdict> {
    const check = checkEnvelope(msg.data, policy, { repoId: msg.repoId })
    if (check.verdict !== 'accept') {
      stats.received[check.verdict]++
      stats.rejectReasons[check.code] = (stats.rejectReasons[check.code] ?? 0) + 1
      metrics.attestations.inc({ verdict: check.verdict === 'reject' ? 'rejected' : 'ignored', reason: check.code })
      logger.debug('envelope refused', { verdict: check.verdict, code: check.code, reason: check.reason, from: msg.from, via: msg.via })
      return check.verdict
    }
    const v = check.verified
    if (msg.via === 'gossip' && !signerBudget.take(v.keyid, Date.now())) {
      stats.received.ignore++
      metrics.attestations.inc({ verdict: 'ignored', reason: 'signer-rate-limit' })
      return 'ignore'
    }
    const out = await store.putEnvelope(v, msg.data)
    if (out.status === 'duplicate') {
      stats.received.ignore++
      metrics.attestations.inc({ verdict: 'ignored', reason: 'duplicate' })
      return 'ignore'
    }
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
    return 'accept'
  }

  return { validate, stats }
}

import {
  QuorateError, checkEnvelope, parseAttestation, parseEnvelope, parseJsonStrict, signStatement,
  type BuilderKeyPair, type LogPosition, type Policy, type VerifiedAttestation
} from '@quorate/core'
import type { Store } from '@quorate/store'

/** One envelope this node signed into its own log, persisted (fsync) before anyone else sees it. */
export interface OwnEnvelope {
  repoId: string
  id: string
  bytes: Uint8Array
  /** The stored, verified attestation; undefined when the policy does not count this key (then nothing was stored). */
  verified?: VerifiedAttestation
  /** Why the envelope does not count, when `verified` is undefined. */
  reason?: string
}

export interface OwnLogComponents {
  store: Pick<Store, 'logHead' | 'putEnvelope' | 'envelopesAfter'>
  key: BuilderKeyPair
  policy: Policy
  /**
   * The builder identity to record when the policy does not list this key yet (key rotation
   * re-signs under a key the network adds afterwards). Without it, such envelopes are not stored.
   */
  identity?: { builder: string, org: string }
}

/**
 * The only writer of this node's own logs: one log per (repository, own key). Appends are
 * serialized, so two statements never take the same sequence number, and each is persisted with
 * `sync: true` before `append` resolves: publishing comes after, so an honest crash never looks
 * like equivocation. `quorate key rotate` re-signs a stopped node's history through it too.
 */
export interface OwnLog {
  /** Signs the statement `make` returns for the next log position of `repoId`, stores it (fsync) and returns it. */
  append: (repoId: string, make: (log: LogPosition) => Record<string, unknown>) => Promise<OwnEnvelope>
  /** The newest `n` envelopes of this key's log for `repoId` (to republish after a restart). */
  recent: (repoId: string, n: number) => Promise<OwnEnvelope[]>
  /** Resolves when no append is in flight. */
  idle: () => Promise<void>
}

export function ownLog (c: OwnLogComponents): OwnLog {
  const { store, key, policy } = c
  let chain: Promise<unknown> = Promise.resolve()

  async function appendNow (repoId: string, make: (log: LogPosition) => Record<string, unknown>): Promise<OwnEnvelope> {
    const head = await store.logHead(repoId, key.keyid)
    const log: LogPosition = head === undefined ? { seq: 0, prev: null } : { seq: head.seq + 1, prev: head.envelopeId }
    const signed = signStatement(make(log), key)
    const check = checkEnvelope(signed.bytes, policy, { repoId })
    let verified: VerifiedAttestation | undefined
    let reason: string | undefined
    if (check.verdict === 'accept') {
      verified = check.verified
    } else if (c.identity !== undefined && !policy.keys.has(key.keyid)) {
      verified = { id: signed.id, keyid: key.keyid, builder: c.identity.builder, org: c.identity.org, envelope: signed.envelope, attestation: parseAttestation(new Uint8Array(Buffer.from(signed.envelope.payload, 'base64'))) }
    } else {
      reason = check.reason
    }
    if (verified !== undefined) {
      const out = await store.putEnvelope(verified, signed.bytes, { sync: true })
      if (out.status === 'fork') throw new QuorateError('STORE_FAILED', `own log of ${repoId} already holds another envelope at position ${log.seq}; this data directory was changed under the running node`)
    }
    return { repoId, id: signed.id, bytes: signed.bytes, verified, reason }
  }

  return {
    append (repoId, make) {
      const p = chain.then(async () => await appendNow(repoId, make), async () => await appendNow(repoId, make))
      chain = p.catch(() => {})
      return p
    },
    async recent (repoId, n) {
      const head = await store.logHead(repoId, key.keyid)
      if (head === undefined) return []
      const out: OwnEnvelope[] = []
      for await (const bytes of store.envelopesAfter(repoId, key.keyid, Math.max(-1, head.seq - n))) {
        const parsed = parseEnvelope(parseJsonStrict(Buffer.from(bytes).toString('utf8'), 'stored envelope'))
        if (parsed.keyid === key.keyid) out.push({ repoId, id: parsed.id, bytes })
      }
      return out
    },
    async idle () { await chain.catch(() => {}) }
  }
}

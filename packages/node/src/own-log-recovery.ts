import { existsSync, readFileSync, rmSync } from 'node:fs'
import { checkEnvelope, type Policy } from '@quorate/core'
import type { Store } from '@quorate/store'
import type { Logger } from './logger.js'
import type { Decisions } from './decisions.js'
import type { EventBus } from './events.js'

/** Written by `quorate init` next to a brand-new key: this data directory starts the key's logs. */
export const NEW_KEY_MARKER = 'NEW_KEY'
/** Store state: this data directory holds the key's logs from seq 0 (value: the keyid). Key rotation sets it for the new key. */
export const HELD = (keyid: string): string => `ownlog:held:${keyid}`
/** Store state set by `quorate restore`: the store may be older than the key's logs. */
export const RECOVER_STATE = 'ownlog:recover'

export interface OwnLogStatus {
  state: 'ready' | 'recovering'
  /** Why recovery is needed, or how the log is known to be complete. */
  reason: string
  /** Organizations whose builders answered with this key's logs, and how many are needed. */
  answeredOrgs: string[]
  requiredOrgs: number
  /** Envelopes of this key fetched back from peers. */
  recovered: number
}

export interface OwnLogRecoveryInit {
  /** The operator's statement that this key never signed anything (node config "keyIsNew"). */
  keyIsNew?: boolean
  /** The data directory, where `quorate init` leaves the NEW_KEY marker. */
  dataDir: string
  /** How often unanswered peers are asked again, ms. Default 2000. */
  retryMs?: number
}

export interface OwnLogRecoveryComponents {
  policy: Policy
  keyid: string
  store: Pick<Store, 'getState' | 'putState' | 'putEnvelope' | 'logHead'>
  /** Told of every envelope stored (decisions drop what they cached for its commit). */
  decisions?: Pick<Decisions, 'envelopeAdded' | 'proofAdded'>
  /** Told of every envelope stored, like ingest tells it (`via: 'recovery'`): SSE clients and the cached commit pages see it. */
  events?: Pick<EventBus, 'emit'>
  /** Fetches every envelope a peer holds of `keyid`'s log for `repoId` (untrusted). Default: GET {endpoint}/v1/logs/{repo}/{keyid}. */
  fetchLog?: (endpoint: string, repoId: string, keyid: string) => Promise<unknown[]>
  logger: Logger
}

/**
 * DESIGN.md "A node never forks its own log": before this node signs under a key whose logs this
 * data directory does not hold from seq 0 (a lost data directory, a restore from an older backup),
 * it fetches the key's logs back from the public endpoints of other builders until builders of
 * threshold organizations (or all other organizations with an endpoint, when fewer) answered, and
 * only then lets signatures through. Peers can withhold but not forge: only envelopes signed by
 * this key are taken. Builds may run meanwhile; `ready()` holds their signatures.
 */
export interface OwnLogRecovery {
  ready: () => Promise<void>
  status: () => OwnLogStatus
  start: () => Promise<void>
  stop: () => Promise<void>
}

async function fetchLogOverHttp (endpoint: string, repoId: string, keyid: string): Promise<unknown[]> {
  const res = await fetch(`${endpoint.replace(/\/+$/, '')}/v1/logs/${encodeURIComponent(repoId)}/${keyid}`, { signal: AbortSignal.timeout(20_000) })
  if (!res.ok) throw new Error(`HTTP ${res.status}`)
  const body = await res.json() as { envelopes?: unknown }
  if (!Array.isArray(body.envelopes)) throw new Error('no envelope list in the answer')
  return body.envelopes
}

export function ownLogRecovery (init: OwnLogRecoveryInit, c: OwnLogRecoveryComponents): OwnLogRecovery {
  const { policy, keyid, store, logger } = c
  const fetchLog = c.fetchLog ?? fetchLogOverHttp
  const self = policy.keys.get(keyid)
  const status: OwnLogStatus = { state: 'recovering', reason: 'not checked yet', answeredOrgs: [], requiredOrgs: 0, recovered: 0 }
  let release!: () => void
  const readyPromise = new Promise<void>(resolve => { release = resolve })
  let stopping = false
  let timer: NodeJS.Timeout | undefined
  let wake: (() => void) | undefined

  async function markHeld (reason: string): Promise<void> {
    await store.putState(HELD(keyid), keyid)
    await store.putState(RECOVER_STATE, false)
    status.state = 'ready'
    status.reason = reason
    release()
  }

  /** One round: asks every peer not yet answered; true when enough organizations answered. */
  async function round (peers: Array<{ name: string, org: string, endpoint: string }>, answered: Set<string>): Promise<boolean> {
    for (const p of peers) {
      if (stopping) return false
      if (answered.has(p.name)) continue
      try {
        for (const repoId of policy.repositories.keys()) {
          for (const raw of await fetchLog(p.endpoint, repoId, keyid)) {
            const check = checkEnvelope(raw as object, policy, { repoId })
            if (check.verdict !== 'accept' || check.verified.keyid !== keyid) continue
            const bytes = new TextEncoder().encode(JSON.stringify(raw))
            const out = await store.putEnvelope(check.verified, bytes, { sync: true })
            if (out.status === 'stored') status.recovered++
            if (out.status === 'fork') c.decisions?.proofAdded(repoId, check.verified.attestation.commit)
            if (out.status !== 'duplicate') {
              c.decisions?.envelopeAdded(check.verified)
              const a = check.verified.attestation
              c.events?.emit({ type: 'attestation', repoId, commit: a.commit, envelopeId: check.verified.id, builder: check.verified.builder, kind: a.kind, via: 'recovery' })
            }
            if (out.status === 'fork') logger.error('own log fork found', { repo: repoId, seq: check.verified.attestation.log.seq, hint: 'a peer holds a different envelope of this key at a position this node also holds: this key signed twice (two nodes with one key?)' })
          }
        }
        answered.add(p.name)
      } catch (err) {
        logger.debug('own log fetch failed', { peer: p.name, error: (err as Error).message })
      }
    }
    status.answeredOrgs = [...new Set(peers.filter(p => answered.has(p.name)).map(p => p.org))].sort()
    return status.answeredOrgs.length >= status.requiredOrgs
  }

  async function recover (): Promise<void> {
    const peers = [...policy.builders.values()]
      .filter(b => b.name !== self?.builder && b.endpoint !== undefined)
      .map(b => ({ name: b.name, org: b.org, endpoint: b.endpoint! }))
    status.requiredOrgs = Math.min(policy.threshold, new Set(peers.map(p => p.org)).size)
    if (status.requiredOrgs === 0) {
      // Nobody to ask (a one-builder network, or no other builder publishes an endpoint): the
      // store is all there is. Say so loudly rather than never signing again.
      logger.warn('own log not checked', { reason: status.reason, hint: 'no other builder in the policy has an "endpoint" to fetch this key\'s logs from; continuing from this store' })
      await markHeld('no other builder has an endpoint to ask: continuing from this store')
      return
    }
    logger.warn('holding signatures', { reason: status.reason, hint: `fetching this key's logs from builders of ${status.requiredOrgs} organizations before signing anything` })
    const answered = new Set<string>()
    while (!stopping) {
      if (await round(peers, answered)) {
        const heads = await Promise.all([...policy.repositories.keys()].map(async r => `${r}:${(await store.logHead(r, keyid))?.seq ?? -1}`))
        await markHeld(`logs fetched back from ${status.answeredOrgs.join(', ')}`)
        logger.info('own log recovered', { orgs: status.answeredOrgs.join(','), envelopes: status.recovered, heads: heads.join(' '), hint: 'signing resumes after the highest sequence number; build keys already signed are republished, not rebuilt' })
        return
      }
      await new Promise<void>(resolve => { wake = resolve; timer = setTimeout(resolve, init.retryMs ?? 2000) })
    }
  }

  return {
    ready: async () => await readyPromise,
    status: () => ({ ...status, answeredOrgs: [...status.answeredOrgs] }),
    async start () {
      stopping = false
      const restored = await store.getState<boolean>(RECOVER_STATE) === true
      if (!restored && await store.getState<string>(HELD(keyid)) === keyid) {
        status.state = 'ready'
        status.reason = 'this data directory holds the key\'s logs'
        release()
        return
      }
      const marker = `${init.dataDir}/${NEW_KEY_MARKER}`
      const markedNew = existsSync(marker) && readFileSync(marker, 'utf8').trim() === keyid
      const anyLog = (await Promise.all([...policy.repositories.keys()].map(async r => await store.logHead(r, keyid)))).some(h => h !== undefined)
      if (!restored && !anyLog && (markedNew || init.keyIsNew === true)) {
        await markHeld(markedNew ? 'a new key: quorate init created it with this data directory' : 'the node config says this key is new ("keyIsNew")')
        if (markedNew) rmSync(marker, { force: true })
        return
      }
      status.reason = restored ? 'the store was restored from a backup and may be older than this key\'s logs' : 'this data directory does not hold this key\'s logs (a new or lost data directory)'
      void recover().catch(err => logger.error('own log recovery failed', { error: (err as Error).message }))
    },
    async stop () {
      stopping = true
      clearTimeout(timer)
      wake?.()
    }
  }
}

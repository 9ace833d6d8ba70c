import { QuorateError } from '@quorate/core'
import type { PeerBans } from './peer-bans.js'
import type { FrameReader } from './stream-io.js'
import { MAX_HEADS, MAX_REJECTS_PER_ROUND, logKey, parseSyncFrame, protocolError } from './sync-frames.js'
import type { SyncFrame } from './sync-frames.js'
import type { Validator } from './validator.js'
import type { LogHead, NetworkLogger, NetworkStats, Verdict } from './types.js'

/**
 * The receive path of a sync round, from the peer's frames to the node's validator: read the
 * peer's heads (keeping only those of logs we hold), then its envelopes (up to VALIDATION_WINDOW in validation at once) until its
 * end frame, each through `deliver` (size and repository checks, `validate`, counters, a penalty
 * per rejected envelope). Everything a round takes in passes here.
 */

export interface PeerHeads {
  /** The peer's heads of the logs we hold (logKey → head); heads of other logs are dropped as they arrive. */
  heads: Map<string, LogHead>
  /** The repositories the peer carries that we carry too. */
  repoIds: Set<string>
}

export interface ReceiveOptions {
  /** End the round when the peer sends nothing for this long while we wait for it. */
  idleMs: number
}

async function nextFrame (reader: FrameReader, opts: ReceiveOptions): Promise<SyncFrame | undefined> {
  const bytes = await reader.next(opts.idleMs)
  return bytes === undefined ? undefined : parseSyncFrame(bytes)
}

/**
 * Read the peer's heads frames. Only heads of logs in `ours` are kept (we send only from logs we
 * hold, so the rest tell us nothing): a round holds at most as many heads as we have logs,
 * however many the peer announces. More than MAX_HEADS announced is a violation ('oversized').
 */
export async function receiveHeads (reader: FrameReader, ours: Map<string, LogHead>, ourRepoIds: Set<string>, opts: ReceiveOptions): Promise<PeerHeads> {
  const heads = new Map<string, LogHead>()
  let repoIds: Set<string> | undefined
  let announced = 0
  for (;;) {
    const frame = await nextFrame(reader, opts)
    if (frame === undefined) throw protocolError('stream ended before the heads', {}, 'truncated')
    if (frame.type !== 'heads') throw protocolError(`expected a heads frame, got "${frame.type}"`)
    if (repoIds === undefined) {
      if (frame.repoIds === undefined) throw protocolError('the first heads frame has no "repoIds"')
      repoIds = new Set(frame.repoIds.filter(id => ourRepoIds.has(id)))
    }
    announced += frame.heads.length
    if (announced > MAX_HEADS) throw protocolError(`more than ${MAX_HEADS} log heads announced in one round`, { announced }, 'oversized')
    for (const h of frame.heads) {
      const key = logKey(h.repoId, h.keyid)
      if (ours.has(key)) heads.set(key, h)
    }
    if (frame.more !== true) break
  }
  return { heads, repoIds }
}

/**
 * Envelopes of one round validated at once (see receiveEnvelopes): enough that the store's next
 * batch fills while verification runs, on verify worker threads too (with 64 a worker and the
 * main thread mostly took turns: 3–4k/s where 256–1,024 reached 8k/s with a core to spare).
 * At most 256 × 64 KiB in memory per round.
 */
export const VALIDATION_WINDOW = 256

/** Hands one received envelope to validation; resolves with the verdict. */
export type Deliver = (repoId: string, data: Uint8Array) => Promise<Verdict>

/**
 * Read env frames until the end frame, delivering each in order, up to VALIDATION_WINDOW at once
 * (verifying the next frames overlaps storing the previous ones). MAX_REJECTS_PER_ROUND rejected
 * envelopes end the round.
 */
export async function receiveEnvelopes (reader: FrameReader, deliver: Deliver, opts: ReceiveOptions): Promise<{ received: number, accepted: number }> {
  let received = 0
  let accepted = 0
  let rejected = 0
  let misbehaving: QuorateError | undefined
  // Up to VALIDATION_WINDOW envelopes are validated at once: the next frames are parsed and
  // verified while the store writes the previous ones (it batches concurrent writes).
  const inFlight = new Set<Promise<void>>()
  const settle = (verdict: Verdict): void => {
    if (verdict === 'accept') accepted++
    else if (verdict === 'reject' && ++rejected >= MAX_REJECTS_PER_ROUND) {
      misbehaving ??= new QuorateError('NETWORK_FAILED', `sync protocol: ${rejected} envelopes failed validation in one round; the peer is misbehaving`, { rejected })
    }
  }
  try {
    for (;;) {
      if (misbehaving !== undefined) throw misbehaving
      const frame = await nextFrame(reader, opts)
      if (frame === undefined) throw protocolError('stream ended without an end frame (truncated)', {}, 'truncated')
      if (frame.type === 'end') break
      if (frame.type !== 'env') throw protocolError(`expected an env or end frame, got "${frame.type}"`)
      received++
      const p: Promise<void> = deliver(frame.repoId, frame.data).then(settle, () => {}).finally(() => inFlight.delete(p))
      inFlight.add(p)
      if (inFlight.size >= VALIDATION_WINDOW) await Promise.race(inFlight)
    }
  } finally {
    await Promise.all(inFlight)
  }
  if (misbehaving !== undefined) throw misbehaving
  return { received, accepted }
}

export interface SyncDeliveryInit {
  repoIds: string[]
  maxMessageBytes: number
  log: NetworkLogger
}

export interface SyncDeliveryComponents {
  validator: Validator
  bans: Pick<PeerBans, 'penalize'>
  stats: NetworkStats
}

/**
 * What happens to one envelope received by sync from `from`: ignored for a repository we do not
 * carry, rejected over maxMessageBytes, otherwise validated like gossip; counted, and a rejected
 * one costs the peer a point.
 */
export function syncDelivery (init: SyncDeliveryInit, components: SyncDeliveryComponents): (from: string) => Deliver {
  const repoSet = new Set(init.repoIds)
  const { validator, bans, stats } = components
  return (from) => async (repoId, data) => {
    stats.syncReceived++
    let verdict: Verdict
    if (!repoSet.has(repoId)) verdict = 'ignore'
    else if (data.byteLength > init.maxMessageBytes) {
      init.log('sync-oversized', { repoId, from, bytes: data.byteLength, maxMessageBytes: init.maxMessageBytes })
      verdict = 'reject'
    } else verdict = await validator.run({ repoId, data, from, via: 'sync' })
    if (verdict === 'accept') stats.syncAccepted++
    else if (verdict === 'reject') {
      stats.syncRejected++
      bans.penalize(from, 'rejected-envelope', `repository ${repoId}`)
    } else stats.syncIgnored++
    return verdict
  }
}

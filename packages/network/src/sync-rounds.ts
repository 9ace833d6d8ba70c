import type { Stream } from '@libp2p/interface'
import { QuorateError, isQuorateError } from '@quorate/core'
import type { NetworkConfig } from './config.js'
import { errorMessage, parsePeerId, violationOf } from './errors.js'
import { DIAL_TIMEOUT_MS } from './host.js'
import type { Host } from './host.js'
import type { PeerBans } from './peer-bans.js'
import type { Misbehaviour } from './peer-penalties.js'
import { SYNC_PROTOCOL, runSyncSession } from './sync-protocol.js'
import type { Deliver } from './sync-receive.js'
import type { SyncSlots } from './sync-slots.js'
import type { NetworkLogger, NetworkStats, Startable, SyncRoundResult, SyncSource } from './types.js'

export interface SyncRoundsInit {
  config: Pick<NetworkConfig, 'repoIds' | 'maxMessageBytes' | 'maxSyncFrameBytes' | 'syncTimeoutMs' | 'syncIdleTimeoutMs'>
  log: NetworkLogger
}

export interface SyncRoundsComponents {
  host: Pick<Host, 'handle' | 'unhandle' | 'dialProtocol'>
  source: SyncSource
  /** The receive path for envelopes from one peer (sync-receive.ts). */
  deliver: (from: string) => Deliver
  slots: SyncSlots
  bans: Pick<PeerBans, 'penalize'>
  stats: NetworkStats
  /** Called after every round that completed (sync-scheduler.ts passes new envelopes on). */
  onRoundDone?: (peerId: string, result: SyncRoundResult) => void
}

/**
 * Sync rounds, in and out. Every round, whichever side opened it, has a deadline
 * (`syncTimeoutMs`) that ends it whatever it is waiting for (the peer, our validator, a dial),
 * and with it frees its inbound slot and its entry in the outbound round cache; a peer that
 * sends nothing for `syncIdleTimeoutMs` while we wait ends it sooner. A round that ended
 * because the peer stalled costs it 'stalled' points (two ban it); inbound rounds need a slot
 * (sync-slots.ts).
 */
export interface SyncRounds extends Startable {
  /** Run one round with a peer now; joins the round already running with it, if any. */
  syncWith: (peerId: string) => Promise<SyncRoundResult>
  /** Whether an outbound round with the peer is running. */
  isRunning: (peerId: string) => boolean
  /** Whether a round the peer opened is running. */
  isServing: (peerId: string) => boolean
  /** When the last round with the peer completed (ms since epoch). */
  lastSyncAt: (peerId: string) => number | undefined
  forgetPeer: (peerId: string) => void
}

export function syncRounds (init: SyncRoundsInit, components: SyncRoundsComponents): SyncRounds {
  const { config, log } = init
  const { host, source, slots, bans, stats } = components
  const rounds = new Map<string, Promise<SyncRoundResult>>()
  const lastSync = new Map<string, number>()
  const active = new Set<AbortController>()
  let stopped = false

  /** One round under its deadline. `open` gives the stream (dials, for an outbound round). */
  const round = async (peer: string, direction: 'inbound' | 'outbound', open: (signal: AbortSignal) => Promise<Stream>): Promise<SyncRoundResult> => {
    const controller = new AbortController()
    active.add(controller)
    let stream: Stream | undefined
    let expired = false
    let stalled = false
    const progress = { waitingForPeer: () => false }
    const timer = setTimeout(() => {
      expired = true
      stalled = progress.waitingForPeer() // now, before the abort wakes the reader
      const err = new QuorateError('NETWORK_FAILED', `sync round with ${peer} timed out after ${config.syncTimeoutMs} ms`, { peer })
      controller.abort(err)
      stream?.abort(err)
    }, config.syncTimeoutMs)
    const deadline = new Promise<never>((_resolve, reject) => {
      controller.signal.addEventListener('abort', () => { reject(controller.signal.reason) }, { once: true })
    })
    deadline.catch(() => {})
    const started = Date.now()
    try {
      const work = (async () => {
        stream = await open(controller.signal)
        return await runSyncSession(stream, {
          source,
          repoIds: config.repoIds,
          maxMessageBytes: config.maxMessageBytes,
          maxFrameBytes: config.maxSyncFrameBytes,
          deliver: components.deliver(peer),
          log,
          peerId: peer,
          idleMs: config.syncIdleTimeoutMs,
          signal: controller.signal,
          progress
        })
      })()
      work.catch(() => {})
      // the deadline wins even over a session stuck where no stream event reaches it
      const result = await Promise.race([work, deadline])
      stats.syncRounds++
      stats.syncSent += result.sent
      lastSync.set(peer, Date.now())
      log('sync-round', { peer, direction, ...result, ms: Date.now() - started })
      components.onRoundDone?.(peer, result)
      return result
    } catch (err) {
      stats.syncFailures++
      let kind: Misbehaviour | undefined
      if (expired) kind = stream === undefined ? undefined : stalled ? 'stalled' : 'timeout'
      else if (!controller.signal.aborted) kind = violationOf(err)
      if (kind === 'stalled') stats.syncStalled++
      if (kind !== undefined) bans.penalize(peer, kind, errorMessage(err))
      if (stream !== undefined && (stream.status === 'open' || stream.status === 'closing')) stream.abort(err instanceof Error ? err : new Error(String(err)))
      throw err
    } finally {
      clearTimeout(timer)
      active.delete(controller)
    }
  }

  const onInbound = (stream: Stream, peer: string): void => {
    if (stopped) {
      stream.abort(new Error('the network is stopping'))
      return
    }
    const slot = slots.acquire(peer)
    if ('refused' in slot) {
      stats.syncRefused++
      log('sync-refused', { peer, reason: slot.refused, inboundRounds: slots.inUse() })
      stream.abort(new Error(`sync round refused: ${slot.refused}`))
      return
    }
    round(peer, 'inbound', async () => stream)
      .catch(err => { log('sync-failed', { peer, reason: 'inbound', slot: slot.kind, error: errorMessage(err) }) })
      .finally(() => { slot.release() })
  }

  const dial = async (peerId: string, signal: AbortSignal): Promise<Stream> => {
    try {
      return await host.dialProtocol(parsePeerId(peerId, 'syncWith'), SYNC_PROTOCOL, { signal: AbortSignal.any([signal, AbortSignal.timeout(DIAL_TIMEOUT_MS)]) })
    } catch (err) {
      if (isQuorateError(err, 'USAGE')) throw err
      throw new QuorateError('NETWORK_FAILED', `sync with ${peerId}: could not open ${SYNC_PROTOCOL} (${errorMessage(err)}); is the peer connected and running sync?`, { peer: peerId, phase: 'dial' }, { cause: err })
    }
  }

  return {
    async start () {
      await host.handle(SYNC_PROTOCOL, (stream, connection) => { onInbound(stream, connection.remotePeer.toString()) }, { maxInboundStreams: 2, maxOutboundStreams: 2 })
    },

    async stop () {
      stopped = true
      for (const controller of active) controller.abort(new QuorateError('NETWORK_FAILED', 'the network is stopping', {}))
      await host.unhandle(SYNC_PROTOCOL).catch(() => {})
    },

    async syncWith (peerId) {
      if (stopped) throw new QuorateError('NETWORK_FAILED', 'syncWith: the network is stopped', { peer: peerId })
      const existing = rounds.get(peerId)
      if (existing !== undefined) return await existing
      parsePeerId(peerId, 'syncWith')
      const outbound = round(peerId, 'outbound', async (signal) => await dial(peerId, signal)).catch((err: unknown) => {
        if (isQuorateError(err) && (err.fields.phase === 'dial' || err.code === 'USAGE')) throw err
        throw new QuorateError('NETWORK_FAILED', `sync with ${peerId} failed: ${errorMessage(err)}`, { peer: peerId }, { cause: err })
      })
      rounds.set(peerId, outbound)
      try {
        return await outbound
      } finally {
        rounds.delete(peerId)
      }
    },

    isRunning: (peerId) => rounds.has(peerId),
    // every inbound round holds a slot until it ends
    isServing: (peerId) => slots.inUse(peerId) > 0,
    lastSyncAt: (peerId) => lastSync.get(peerId),
    forgetPeer: (peerId) => { lastSync.delete(peerId) }
  }
}

import type { Connection } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { QuorateError } from '@quorate/core'
import { errorMessage } from './errors.js'
import { maySpeak } from './host.js'
import type { Host } from './host.js'
import { SYNC_PROTOCOL } from './sync-protocol.js'
import type { SyncRounds } from './sync-rounds.js'
import type { NetworkLogger, Startable, SyncRoundResult } from './types.js'

/**
 * The side that accepted a connection waits this long before syncing, so the dialer's round
 * usually comes first and one round serves both (and skips its own while the dialer's is still
 * running: a catch-up of a long history takes far longer, and a second round would stream it all again).
 */
const INBOUND_SYNC_DELAY_MS = 1500
/** After a sync round brought us new envelopes, other peers are synced with after this delay (bursts coalesce). */
const PROPAGATE_DELAY_MS = 500

export interface SyncSchedulerInit {
  /** Periodic round with every connected peer, in ms; 0: only on connect and on demand. */
  syncIntervalMs: number
  log: NetworkLogger
}

export interface SyncSchedulerComponents {
  host: Pick<Host, 'getPeers' | 'getConnections' | 'peerStore' | 'addEventListener' | 'removeEventListener'>
  rounds: SyncRounds
}

/**
 * When sync rounds run: when a connection opens (the dialer at once, the other side after
 * INBOUND_SYNC_DELAY_MS if no round happened meanwhile and none is running), every `syncIntervalMs` with each
 * connected peer (skipped when a round with it completed within half a period), and soon after
 * a round that brought new envelopes, with every other peer (gossip never carries what was
 * published while a peer was away).
 */
export interface SyncScheduler extends Startable {
  /** Run a round with the peer now (sync-rounds.ts), then any round that was asked for meanwhile. */
  syncWith: (peerId: string) => Promise<SyncRoundResult>
  /** Call after every completed round: new envelopes are passed on to the other peers. */
  onRoundDone: (peerId: string, result: SyncRoundResult) => void
  forgetPeer: (peerId: string) => void
}

export function syncScheduler (init: SyncSchedulerInit, components: SyncSchedulerComponents): SyncScheduler {
  const { log } = init
  const { host, rounds } = components
  const connectTimers = new Set<NodeJS.Timeout>()
  const resyncAfterRound = new Set<string>()
  const resyncTimers = new Map<string, NodeJS.Timeout>()
  let periodic: NodeJS.Timeout | undefined
  let stopped = false

  const syncWith = async (peerId: string): Promise<SyncRoundResult> => {
    try {
      return await rounds.syncWith(peerId)
    } finally {
      // new envelopes arrived from someone else while this round ran: one more round
      if (resyncAfterRound.delete(peerId)) scheduleResync(peerId)
    }
  }

  const backgroundSync = (peerId: string, reason: string): void => {
    if (stopped || rounds.isRunning(peerId)) return
    maySpeak(host, peerIdFromString(peerId), SYNC_PROTOCOL)
      .then(async (yes) => { if (yes && !stopped) await syncWith(peerId) })
      .catch(err => { log('sync-failed', { peer: peerId, reason, error: errorMessage(err) }) })
  }

  // Coalesced per peer; a peer mid-round gets one more round after it.
  const scheduleResync = (peerId: string): void => {
    if (stopped || resyncTimers.has(peerId)) return
    const timer = setTimeout(() => {
      resyncTimers.delete(peerId)
      if (rounds.isRunning(peerId)) resyncAfterRound.add(peerId)
      else backgroundSync(peerId, 'propagate')
    }, PROPAGATE_DELAY_MS)
    timer.unref()
    resyncTimers.set(peerId, timer)
  }

  const onConnectionOpen = (evt: CustomEvent<Connection>): void => {
    const conn = evt.detail
    const peer = conn.remotePeer.toString()
    if (conn.direction === 'outbound') {
      backgroundSync(peer, 'connect')
      return
    }
    const openedAt = Date.now()
    const timer = setTimeout(() => {
      connectTimers.delete(timer)
      if ((rounds.lastSyncAt(peer) ?? 0) < openedAt && !rounds.isServing(peer) && host.getConnections(conn.remotePeer).length > 0) backgroundSync(peer, 'connect')
    }, INBOUND_SYNC_DELAY_MS)
    timer.unref()
    connectTimers.add(timer)
  }

  return {
    start () {
      host.addEventListener('connection:open', onConnectionOpen)
    },

    afterStart () {
      if (init.syncIntervalMs <= 0) return
      periodic = setInterval(() => {
        const now = Date.now()
        for (const peer of host.getPeers()) {
          const id = peer.toString()
          // the peer's own timer may just have synced with us; one round a period is enough
          if (now - (rounds.lastSyncAt(id) ?? 0) >= init.syncIntervalMs / 2) backgroundSync(id, 'periodic')
        }
      }, init.syncIntervalMs)
      periodic.unref()
    },

    stop () {
      stopped = true
      host.removeEventListener('connection:open', onConnectionOpen)
      if (periodic !== undefined) clearInterval(periodic)
      for (const timer of connectTimers) clearTimeout(timer)
      connectTimers.clear()
      for (const timer of resyncTimers.values()) clearTimeout(timer)
      resyncTimers.clear()
    },

    async syncWith (peerId) {
      if (stopped) throw new QuorateError('NETWORK_FAILED', 'syncWith: the network is stopped', { peer: peerId })
      return await syncWith(peerId)
    },

    onRoundDone (from, result) {
      if (result.accepted === 0) return
      for (const peer of host.getPeers()) {
        const id = peer.toString()
        if (id !== from) scheduleResync(id)
      }
    },

    forgetPeer (peerId) {
      resyncAfterRound.delete(peerId)
    }
  }
}

import type { NetworkStats, NetworkLogger, Startable } from './types.js'
import { PeerPenalties } from './peer-penalties.js'
import type { Misbehaviour } from './peer-penalties.js'
import { errorMessage } from './errors.js'

/** Misbehaviour points (see peer-penalties.ts) at which a peer is banned: 10, less a little for the decay between two offences. */
export const BAN_POINTS = 9.5

export interface PeerBansInit {
  /** How long a banned peer is kept out, in ms; 0 never bans. */
  banMs: number
  /** Our own peer id: never banned. */
  selfId: string
  log: NetworkLogger
}

export interface PeerBansComponents {
  /** Close every connection to a peer (the libp2p host's hangUp). */
  hangUp: (peerId: string) => Promise<void>
  stats: NetworkStats
}

/**
 * Who is kept out, and why. Sync and blob streams are not gossip, so gossipsub never hears of a
 * peer that misbehaves there: `penalize` adds decaying points per kind (peer-penalties.ts) and
 * bans at BAN_POINTS. Gossip misbehaviour reaches `ban` from the gossipsub score (gossip.ts).
 * A banned peer is hung up on and refused by the connection gater (`isBanned`) for banMs.
 */
export interface PeerBans extends Startable {
  isBanned: (peerId: string) => boolean
  ban: (peerId: string, fields: Record<string, unknown>) => void
  penalize: (peerId: string, kind: Misbehaviour, detail: string) => void
}

export function peerBans (init: PeerBansInit, components: PeerBansComponents): PeerBans {
  const { log } = init
  const { stats } = components
  const banned = new Map<string, number>()
  const penalties = new PeerPenalties()
  let stopped = false

  const isBanned = (peerId: string): boolean => {
    const until = banned.get(peerId)
    if (until === undefined) return false
    if (until > Date.now()) return true
    banned.delete(peerId)
    return false
  }

  const ban = (peerId: string, fields: Record<string, unknown>): void => {
    if (isBanned(peerId) || init.banMs === 0 || peerId === init.selfId) return
    banned.set(peerId, Date.now() + init.banMs)
    stats.peersBanned++
    log('peer-banned', { peer: peerId, banMs: init.banMs, ...fields })
    components.hangUp(peerId).catch(err => { log('hang-up-failed', { peer: peerId, error: errorMessage(err) }) })
  }

  const penalize = (peerId: string, kind: Misbehaviour, detail: string): void => {
    if (stopped) return
    stats.streamViolations++
    const points = penalties.add(peerId, kind, Date.now())
    log('peer-misbehaved', { peer: peerId, kind, points: Math.round(points * 10) / 10, detail })
    if (points >= BAN_POINTS) ban(peerId, { reason: `misbehaviour on sync/blob streams (${kind})`, points })
  }

  return {
    isBanned,
    ban,
    penalize,
    stop () { stopped = true }
  }
}

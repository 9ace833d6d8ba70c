/**
 * Misbehaviour points per peer outside gossipsub's score: sync and blob streams are not
 * gossip, so gossipsub never hears of a peer that sends malformed frames or forged envelopes
 * over them. Points decay exponentially (half-life `halfLifeMs`); a peer whose points reach
 * `banAt` is banned like a graylisted gossip peer. Time comes in as a parameter.
 */
export type Misbehaviour =
  /** A frame that is not valid JSON / not a known frame / violates the protocol's order. */
  | 'malformed'
  /** A frame length over the cap, or a malformed length prefix. */
  | 'oversized'
  /** The stream ended cleanly but without the end frame. */
  | 'truncated'
  /** The round ran past its deadline while the peer was making progress (slow, or we were slow). */
  | 'timeout'
  /** The peer held a sync round open without sending anything while we waited for it (idle timeout, or the deadline hit while we waited). */
  | 'stalled'
  /** An envelope received by sync that `validate` rejected (forged, malformed). */
  | 'rejected-envelope'
  /** A blob whose bytes do not hash to the requested sha256. */
  | 'bad-blob'
  /** Every FLOOD_MESSAGES gossip messages over the per-peer rate limit (flooding, even with messages that are only ignored). */
  | 'flood'

/** Points per kind. With a ban at 10: two malformed or oversized frames, two stalled rounds, ten forged envelopes, five timeouts, 500 messages over the gossip rate limit. */
export const MISBEHAVIOUR_POINTS: Record<Misbehaviour, number> = {
  malformed: 5,
  oversized: 5,
  truncated: 2,
  timeout: 2,
  stalled: 5,
  'rejected-envelope': 1,
  'bad-blob': 5,
  flood: 2
}

/** Gossip messages over the rate limit that cost one 'flood' penalty: 500 excess messages ban a peer. */
export const FLOOD_MESSAGES = 100

export class PeerPenalties {
  private readonly halfLifeMs: number
  private readonly points = new Map<string, { value: number, at: number }>()

  constructor (halfLifeMs = 5 * 60_000) {
    this.halfLifeMs = halfLifeMs
  }

  /** Add the points for one misbehaviour; returns the peer's total now. */
  add (peer: string, kind: Misbehaviour, nowMs: number): number {
    const value = this.get(peer, nowMs) + MISBEHAVIOUR_POINTS[kind]
    this.points.set(peer, { value, at: nowMs })
    return value
  }

  get (peer: string, nowMs: number): number {
    const entry = this.points.get(peer)
    if (entry === undefined) return 0
    const value = entry.value * Math.pow(0.5, Math.max(0, nowMs - entry.at) / this.halfLifeMs)
    if (value < 0.01) {
      this.points.delete(peer)
      return 0
    }
    return value
  }

  forget (peer: string): void {
    this.points.delete(peer)
  }
}

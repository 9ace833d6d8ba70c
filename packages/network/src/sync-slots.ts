/**
 * Who may open an inbound sync round now. Slots are limited in total (each round holds a stream,
 * a reader's buffer and a validation queue) and per peer (one peer cannot take them all), and
 * part of them is reserved for peers that have delivered valid envelopes to us (by gossip or
 * sync): peers that hold the open slots with rounds that never end cannot lock out the honest
 * members of the network. A round that is refused costs the peer nothing; it retries later, and
 * our own rounds towards it (on connect, periodic) do not need a slot.
 */
export interface SyncSlotsInit {
  /** Rounds open to any peer at once. */
  open: number
  /** Further rounds only for proven peers. */
  reserved: number
  /** Rounds one peer may hold at once. */
  perPeer: number
  /** Proven peers remembered (least recently proven forgotten first). */
  maxProvenPeers?: number
}

export interface SyncSlot {
  /** 'reserved' when the round got in only because the peer is proven. */
  kind: 'open' | 'reserved'
  release: () => void
}

export interface SyncSlots {
  /** A slot for a round with `peerId`, or undefined (refuse the round) with the reason. */
  acquire: (peerId: string) => SyncSlot | { refused: string }
  /** `peerId` delivered a valid envelope: it may use the reserved slots from now on. */
  markProven: (peerId: string) => void
  isProven: (peerId: string) => boolean
  /** Rounds held now: total, and by the given peer. */
  inUse: (peerId?: string) => number
}

export const DEFAULT_SYNC_SLOTS: SyncSlotsInit = { open: 8, reserved: 4, perPeer: 2, maxProvenPeers: 10_000 }

export function syncSlots (init: SyncSlotsInit = DEFAULT_SYNC_SLOTS): SyncSlots {
  const maxProven = init.maxProvenPeers ?? 10_000
  const proven = new Map<string, true>() // insertion order = least recently proven first
  const byPeer = new Map<string, number>()
  let open = 0
  let reserved = 0

  const isProven = (peerId: string): boolean => proven.has(peerId)

  return {
    acquire (peerId) {
      const held = byPeer.get(peerId) ?? 0
      if (held >= init.perPeer) return { refused: `the peer already holds ${held} sync rounds (at most ${init.perPeer} per peer)` }
      let kind: SyncSlot['kind']
      if (open < init.open) {
        kind = 'open'
        open++
      } else if (reserved < init.reserved && isProven(peerId)) {
        kind = 'reserved'
        reserved++
      } else {
        return { refused: isProven(peerId) ? `all ${init.open + init.reserved} sync slots are taken` : `all ${init.open} sync slots open to new peers are taken (${init.reserved} more are kept for peers that delivered valid envelopes)` }
      }
      byPeer.set(peerId, held + 1)
      let released = false
      return {
        kind,
        release: () => {
          if (released) return
          released = true
          if (kind === 'open') open--
          else reserved--
          const n = (byPeer.get(peerId) ?? 1) - 1
          if (n <= 0) byPeer.delete(peerId)
          else byPeer.set(peerId, n)
        }
      }
    },
    markProven (peerId) {
      proven.delete(peerId)
      proven.set(peerId, true)
      if (proven.size > maxProven) {
        const oldest = proven.keys().next().value
        if (oldest !== undefined) proven.delete(oldest)
      }
    },
    isProven,
    inUse: (peerId) => peerId === undefined ? open + reserved : (byPeer.get(peerId) ?? 0)
  }
}

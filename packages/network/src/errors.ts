import type { PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { QuorateError, isQuorateError } from '@quorate/core'
import type { Misbehaviour } from './peer-penalties.js'

/** An error's message on one line (libp2p nests causes over several lines). */
export function errorMessage (err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).trim().replace(/\s*\n\s*/g, '; ')
}

/** The kind of protocol violation an error records (`fields.violation`), looking through causes. */
export function violationOf (err: unknown): Misbehaviour | undefined {
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (isQuorateError(e) && typeof e.fields.violation === 'string') return e.fields.violation as Misbehaviour
  }
  return undefined
}

/** A peer id from a caller (`what` names the API call), or USAGE. */
export function parsePeerId (peerId: string, what: string): PeerId {
  try {
    return peerIdFromString(peerId)
  } catch (err) {
    throw new QuorateError('USAGE', `${what}: "${peerId}" is not a peer id (${errorMessage(err)})`, { peerId })
  }
}

import { QuorateError } from '@quorate/core'
import type { Misbehaviour } from './peer-penalties.js'
import { isRepoId } from './topics.js'
import type { LogHead } from './types.js'

/**
 * The sync protocol's frames (DESIGN.md "Network"): UTF-8 JSON payloads inside the
 * length-prefixed frames of frames.ts, parsed strictly at the edge.
 *
 *   {"type":"heads","repoIds":[…],"heads":[LogHead…],"more":true?}
 *   {"type":"env","repoId":…,"data":<strict base64 envelope bytes>}
 *   {"type":"end"}
 */

/** Heads per frame: about 200 bytes each as JSON, so a frame stays far below 128 KiB. */
export const HEADS_PER_FRAME = 256
/** Most logs one peer may announce in a round (bounds the memory a round holds). */
export const MAX_HEADS = 200_000
const MAX_REPO_IDS = 10_000
/** A peer whose envelopes fail validation this often in one round is cut off. */
export const MAX_REJECTS_PER_ROUND = 10
const TOKEN_PATTERN = /^[A-Za-z0-9._:+/=-]{1,128}$/

export type SyncFrame =
  | { type: 'heads', heads: LogHead[], repoIds?: string[], more?: boolean }
  | { type: 'env', repoId: string, data: Uint8Array }
  | { type: 'end' }

/** A protocol violation by the peer; `fields.violation` says which kind (see Misbehaviour), for its standing. */
export function protocolError (message: string, fields: Record<string, unknown> = {}, violation: Misbehaviour = 'malformed'): QuorateError {
  return new QuorateError('NETWORK_FAILED', `sync protocol: ${message}; the peer is misbehaving or runs an incompatible version`, { violation, ...fields })
}

const utf8 = new TextDecoder('utf-8', { fatal: true })
const utf8Encoder = new TextEncoder()

function decodeBase64Strict (text: string): Uint8Array | undefined {
  const bytes = Buffer.from(text, 'base64')
  return bytes.toString('base64') === text ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) : undefined
}

function parseHead (value: unknown, index: number): LogHead {
  const h = value as Partial<Record<keyof LogHead, unknown>> | null
  if (typeof h !== 'object' || h === null) throw protocolError(`heads[${index}] is not an object`)
  if (!isRepoId(h.repoId)) throw protocolError(`heads[${index}].repoId is not a repository id`)
  if (typeof h.keyid !== 'string' || !TOKEN_PATTERN.test(h.keyid)) throw protocolError(`heads[${index}].keyid is malformed`)
  if (typeof h.seq !== 'number' || !Number.isSafeInteger(h.seq) || h.seq < 0) throw protocolError(`heads[${index}].seq is not a non-negative integer`)
  if (typeof h.envelopeId !== 'string' || !TOKEN_PATTERN.test(h.envelopeId)) throw protocolError(`heads[${index}].envelopeId is malformed`)
  const head: LogHead = { repoId: h.repoId, keyid: h.keyid, seq: h.seq, envelopeId: h.envelopeId }
  if (h.firstMissing !== undefined) {
    if (typeof h.firstMissing !== 'number' || !Number.isSafeInteger(h.firstMissing) || h.firstMissing < 0 || h.firstMissing >= h.seq) {
      throw protocolError(`heads[${index}].firstMissing must be an integer from 0 to seq - 1`)
    }
    head.firstMissing = h.firstMissing
  }
  return head
}

/** Parse one sync frame; throws QuorateError('NETWORK_FAILED') naming what was wrong. */
export function parseSyncFrame (bytes: Uint8Array): SyncFrame {
  let value: unknown
  try {
    value = JSON.parse(utf8.decode(bytes))
  } catch (err) {
    throw protocolError(`frame is not UTF-8 JSON (${(err as Error).message})`)
  }
  const frame = value as Record<string, unknown> | null
  if (typeof frame !== 'object' || frame === null || Array.isArray(frame)) throw protocolError('frame is not a JSON object')
  switch (frame.type) {
    case 'heads': {
      if (!Array.isArray(frame.heads) || frame.heads.length > HEADS_PER_FRAME * 4) throw protocolError('heads frame: "heads" must be an array of at most 1024 entries')
      const heads = frame.heads.map(parseHead)
      const out: SyncFrame = { type: 'heads', heads }
      if (frame.repoIds !== undefined) {
        if (!Array.isArray(frame.repoIds) || frame.repoIds.length > MAX_REPO_IDS || !frame.repoIds.every(isRepoId)) {
          throw protocolError('heads frame: "repoIds" must be an array of repository ids')
        }
        out.repoIds = frame.repoIds
      }
      if (frame.more !== undefined) {
        if (typeof frame.more !== 'boolean') throw protocolError('heads frame: "more" must be a boolean')
        out.more = frame.more
      }
      return out
    }
    case 'env': {
      if (!isRepoId(frame.repoId)) throw protocolError('env frame: "repoId" is not a repository id')
      const data = typeof frame.data === 'string' ? decodeBase64Strict(frame.data) : undefined
      if (data === undefined) throw protocolError('env frame: "data" is not strict base64')
      return { type: 'env', repoId: frame.repoId, data }
    }
    case 'end':
      return { type: 'end' }
    default:
      throw protocolError(`unknown frame type ${JSON.stringify(frame.type)}`)
  }
}

export function encodeSyncFrame (frame: SyncFrame): Uint8Array {
  if (frame.type === 'env') {
    return utf8Encoder.encode(JSON.stringify({ type: 'env', repoId: frame.repoId, data: Buffer.from(frame.data.buffer, frame.data.byteOffset, frame.data.byteLength).toString('base64') }))
  }
  return utf8Encoder.encode(JSON.stringify(frame))
}

/** The key of one (repository, signer) log in a heads map. */
export function logKey (repoId: string, keyid: string): string {
  return `${repoId}\n${keyid}`
}

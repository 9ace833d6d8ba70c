import type { Stream } from '@libp2p/interface'
import { QuorateError } from '@quorate/core'
import { FrameReader, FrameWriter } from './stream-io.js'
import type { Misbehaviour } from './peer-penalties.js'
import { isRepoId } from './topics.js'
import type { LogHead, NetworkLogger, SyncRoundResult, SyncSource, Verdict } from './types.js'

/**
 * The sync protocol (DESIGN.md "Network"). Both ends run the same session:
 *
 *   1. send our heads: `{"type":"heads","repoIds":[…],"heads":[LogHead…],"more":true?}` (several
 *      frames when there are many logs; the first carries `repoIds`, the last has no `more`);
 *   2. read the peer's heads;
 *   3. for every log of a repository both sides carry where the peer's seq is lower or missing
 *      (or equal with another envelope id: a fork), stream `{"type":"env","repoId":…,"data":<base64>}`
 *      from `envelopesAfter`, seq ascending, in batched writes that wait for 'drain' when the
 *      stream is full;
 *   4. send `{"type":"end"}` and close our writable end;
 *   while reading the peer's env frames one at a time until its end frame, each through `deliver`.
 *
 * So one round, opened by either side, gives both sides what they lack.
 */
export const SYNC_PROTOCOL = '/quorate/sync/1.0.0'

/** Heads per frame: about 200 bytes each as JSON, so a frame stays far below 128 KiB. */
const HEADS_PER_FRAME = 256
/** Most logs one peer may announce in a round (bounds the memory a round holds). */
const MAX_HEADS = 200_000
const MAX_REPO_IDS = 10_000
/** A peer whose envelopes fail validation this often in one round is cut off. */
const MAX_REJECTS_PER_ROUND = 10
const TOKEN_PATTERN = /^[A-Za-z0-9._:+/=-]{1,128}$/

export type SyncFrame =
  | { type: 'heads', heads: LogHead[], repoIds?: string[], more?: boolean }
  | { type: 'env', repoId: string, data: Uint8Array }
  | { type: 'end' }

/** A protocol violation by the peer; `fields.violation` says which kind (see Misbehaviour), for its standing. */
function protocolError (message: string, fields: Record<string, unknown> = {}, violation: Misbehaviour = 'malformed'): QuorateError {
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

function logKey (repoId: string, keyid: string): string {
  return `${repoId}\n${keyid}`
}

export interface Transfer {
  repoId: string
  keyid: string
  afterSeq: number
}

/**
 * What to send a peer: for each of our logs in a repository it carries, everything after its
 * head (-1 when it has none). Equal seqs with different envelope ids are a fork: send our head
 * so the peer sees the second envelope (equivocation evidence); deeper forks are found by the
 * node from `prev` links.
 */
export function planTransfers (ours: LogHead[], theirs: Map<string, LogHead>, theirRepoIds: Set<string>): Transfer[] {
  const out: Transfer[] = []
  for (const head of ours) {
    if (!theirRepoIds.has(head.repoId)) continue
    const peerHead = theirs.get(logKey(head.repoId, head.keyid))
    let afterSeq: number | undefined
    if (peerHead === undefined) afterSeq = -1
    else if (peerHead.seq < head.seq) afterSeq = peerHead.seq
    else if (peerHead.seq === head.seq && peerHead.envelopeId !== head.envelopeId) afterSeq = head.seq - 1
    // The peer has a gap that we can fill (we hold that seq: our own first gap, if any, is
    // later): send from the gap. What it already holds after the gap comes back as duplicates.
    const gap = peerHead?.firstMissing
    if (gap !== undefined && gap <= head.seq && (head.firstMissing === undefined || head.firstMissing > gap)) {
      afterSeq = Math.min(afterSeq ?? Infinity, gap - 1)
    }
    if (afterSeq !== undefined) out.push({ repoId: head.repoId, keyid: head.keyid, afterSeq })
  }
  return out
}

export interface SyncSessionContext {
  source: SyncSource
  /** Repositories we carry: we announce these and only send and accept envelopes of these. */
  repoIds: string[]
  maxMessageBytes: number
  maxFrameBytes: number
  /** Hand one received envelope to validation; resolves with the verdict. */
  deliver: (repoId: string, data: Uint8Array) => Promise<Verdict>
  log: NetworkLogger
  peerId: string
}

interface PeerHeads {
  heads: Map<string, LogHead>
  repoIds: Set<string>
}

/** Run one session on an open stream (either end). Aborts the stream on any failure. */
export async function runSyncSession (stream: Stream, ctx: SyncSessionContext): Promise<SyncRoundResult> {
  const reader = new FrameReader(stream, ctx.maxFrameBytes)
  let firstError: unknown
  const fail = (err: unknown): void => {
    firstError ??= err
    if (stream.status === 'open' || stream.status === 'closing') stream.abort(err instanceof Error ? err : new Error(String(err)))
  }
  let resolveHeads!: (heads: PeerHeads) => void
  let rejectHeads!: (err: unknown) => void
  const peerHeads = new Promise<PeerHeads>((resolve, reject) => { resolveHeads = resolve; rejectHeads = reject })
  peerHeads.catch(() => {})

  const send = async (): Promise<number> => {
    const writer = new FrameWriter(stream)
    const ourRepos = new Set(ctx.repoIds)
    const ours = (await ctx.source.heads()).filter(h => ourRepos.has(h.repoId))
    for (let i = 0; i === 0 || i < ours.length; i += HEADS_PER_FRAME) {
      const heads = ours.slice(i, i + HEADS_PER_FRAME)
      const frame: SyncFrame = { type: 'heads', heads }
      if (i === 0) frame.repoIds = ctx.repoIds
      if (i + HEADS_PER_FRAME < ours.length) frame.more = true
      await writer.write(encodeSyncFrame(frame))
    }
    await writer.flush() // the peer needs our heads before it can send anything
    const theirs = await peerHeads
    let sent = 0
    for (const t of planTransfers(ours, theirs.heads, theirs.repoIds)) {
      for await (const data of ctx.source.envelopesAfter(t.repoId, t.keyid, t.afterSeq)) {
        if (data.byteLength > ctx.maxMessageBytes) {
          ctx.log('sync-skip-oversized', { peer: ctx.peerId, repoId: t.repoId, keyid: t.keyid, bytes: data.byteLength })
          continue
        }
        await writer.write(encodeSyncFrame({ type: 'env', repoId: t.repoId, data }))
        sent++
      }
    }
    await writer.write(encodeSyncFrame({ type: 'end' }))
    await writer.flush()
    await stream.close()
    return sent
  }

  const nextFrame = async (): Promise<SyncFrame | undefined> => {
    const bytes = await reader.next()
    return bytes === undefined ? undefined : parseSyncFrame(bytes)
  }

  const receive = async (): Promise<{ received: number, accepted: number }> => {
    const heads = new Map<string, LogHead>()
    let repoIds: Set<string> | undefined
    try {
      for (;;) {
        const frame = await nextFrame()
        if (frame === undefined) throw protocolError('stream ended before the heads', {}, 'truncated')
        if (frame.type !== 'heads') throw protocolError(`expected a heads frame, got "${frame.type}"`)
        if (repoIds === undefined) {
          if (frame.repoIds === undefined) throw protocolError('the first heads frame has no "repoIds"')
          repoIds = new Set(frame.repoIds)
        }
        for (const h of frame.heads) {
          if (heads.size >= MAX_HEADS) throw protocolError(`more than ${MAX_HEADS} log heads`)
          heads.set(logKey(h.repoId, h.keyid), h)
        }
        if (frame.more !== true) break
      }
    } catch (err) {
      rejectHeads(err)
      throw err
    }
    resolveHeads({ heads, repoIds })
    let received = 0
    let accepted = 0
    let rejected = 0
    for (;;) {
      const frame = await nextFrame()
      if (frame === undefined) throw protocolError('stream ended without an end frame (truncated)', {}, 'truncated')
      if (frame.type === 'end') break
      if (frame.type !== 'env') throw protocolError(`expected an env or end frame, got "${frame.type}"`)
      received++
      const verdict = await ctx.deliver(frame.repoId, frame.data)
      if (verdict === 'accept') accepted++
      else if (verdict === 'reject' && ++rejected >= MAX_REJECTS_PER_ROUND) {
        throw new QuorateError('NETWORK_FAILED', `sync protocol: ${rejected} envelopes failed validation in one round; the peer is misbehaving`, { rejected })
      }
    }
    return { received, accepted }
  }

  const sending = send().catch((err: unknown) => { fail(err); throw err })
  const receiving = receive().catch((err: unknown) => { fail(err); throw err })
  try {
    const [sent, got] = await Promise.allSettled([sending, receiving])
    if (sent.status === 'rejected' || got.status === 'rejected') throw firstError
    return { received: got.value.received, accepted: got.value.accepted, sent: sent.value }
  } finally {
    reader.dispose()
  }
}

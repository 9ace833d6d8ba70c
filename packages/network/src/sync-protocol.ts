import type { Stream } from '@libp2p/interface'
import { FrameReader, FrameWriter } from './stream-io.js'
import { HEADS_PER_FRAME, encodeSyncFrame, logKey } from './sync-frames.js'
import type { SyncFrame } from './sync-frames.js'
import { receiveEnvelopes, receiveHeads } from './sync-receive.js'
import type { Deliver, PeerHeads } from './sync-receive.js'
import type { LogHead, NetworkLogger, SyncRoundResult, SyncSource } from './types.js'

/**
 * The sync protocol (DESIGN.md "Network"). Both ends run the same session:
 *
 *   1. send our heads: `{"type":"heads","repoIds":[…],"heads":[LogHead…],"more":true?}` (several
 *      frames when there are many logs; the first carries `repoIds`, the last has no `more`);
 *   2. read the peer's heads (sync-receive.ts);
 *   3. for every log of a repository both sides carry where the peer's seq is lower or missing
 *      (or equal with another envelope id: a fork), stream `{"type":"env","repoId":…,"data":<base64>}`
 *      from `envelopesAfter`, seq ascending, in batched writes that wait for 'drain' when the
 *      stream is full;
 *   4. send `{"type":"end"}` and close our writable end;
 *   while reading the peer's env frames one at a time until its end frame, each through `deliver`
 *   (sync-receive.ts).
 *
 * So one round, opened by either side, gives both sides what they lack. Frames: sync-frames.ts;
 * when rounds run and how long they may take: sync-rounds.ts and sync-scheduler.ts.
 */
export const SYNC_PROTOCOL = '/quorate/sync/1.0.0'

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
  deliver: Deliver
  log: NetworkLogger
  peerId: string
  /** End the session when the peer sends nothing for this long while we wait for it. */
  idleMs: number
  /** Ends the session from our side (the round's deadline): reads and writes stop at once. */
  signal?: AbortSignal
  /** Filled in by the session: whether it is waiting for the peer's next frame right now. */
  progress?: { waitingForPeer: () => boolean }
}

/** Run one session on an open stream (either end). Aborts the stream on any failure. */
export async function runSyncSession (stream: Stream, ctx: SyncSessionContext): Promise<SyncRoundResult> {
  const reader = new FrameReader(stream, ctx.maxFrameBytes, { signal: ctx.signal })
  if (ctx.progress !== undefined) ctx.progress.waitingForPeer = () => reader.waiting
  let firstError: unknown
  const fail = (err: unknown): void => {
    firstError ??= err
    if (stream.status === 'open' || stream.status === 'closing') stream.abort(err instanceof Error ? err : new Error(String(err)))
  }
  const ourRepos = new Set(ctx.repoIds)
  // our heads, read once: sent to the peer, and the filter for the peer's heads
  const oursList = ctx.source.heads().then(heads => heads.filter(h => ourRepos.has(h.repoId)))
  oursList.catch(() => {})
  let resolveHeads!: (heads: PeerHeads) => void
  let rejectHeads!: (err: unknown) => void
  const peerHeads = new Promise<PeerHeads>((resolve, reject) => { resolveHeads = resolve; rejectHeads = reject })
  peerHeads.catch(() => {})

  const send = async (): Promise<number> => {
    const writer = new FrameWriter(stream, { signal: ctx.signal })
    const ours = await oursList
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
        ctx.signal?.throwIfAborted()
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

  const receive = async (): Promise<{ received: number, accepted: number }> => {
    const opts = { idleMs: ctx.idleMs }
    let heads: PeerHeads
    try {
      const ours = new Map((await oursList).map(h => [logKey(h.repoId, h.keyid), h]))
      heads = await receiveHeads(reader, ours, ourRepos, opts)
    } catch (err) {
      rejectHeads(err)
      throw err
    }
    resolveHeads(heads)
    return await receiveEnvelopes(reader, ctx.deliver, opts)
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

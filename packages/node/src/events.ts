/** In-process event bus behind the `/v1/events` server-sent events stream. */
export type NodeEvent =
  | { type: 'attestation', repoId: string, commit: string, envelopeId: string, builder: string, kind: string, via: string }
  | { type: 'decision', repoId: string, commit: string, status: string, narSha256?: string, supportingOrgs?: string[], summary: string }
  | { type: 'build', repoId: string, commit: string, phase: string, ok?: boolean, durationMs?: number }
  | { type: 'equivocation', repoId: string, keyid: string, builder: string }
  /** This node's own git mirror saw a watched ref move (observer nodes too: nothing is signed for it). */
  | { type: 'ref', repoId: string, ref: string, commit: string, previous: string | null, via: 'mirror' }

/**
 * In-process event bus with a bounded history, so an SSE client that reconnects with
 * `Last-Event-ID` gets what it missed (up to the last `keep` events) instead of re-fetching everything.
 */
export class EventBus {
  private readonly listeners = new Set<(e: NodeEvent, id: number) => void>()
  private readonly history: Array<{ id: number, event: NodeEvent }> = []
  private nextId: number
  /**
   * `firstId`: the id of the first event. A node starts it from the clock (milliseconds × 1000),
   * so ids keep growing across restarts and an id from an earlier run is never taken for one of
   * this run's (`?since=` and `Last-Event-ID` tell them apart).
   */
  constructor (private readonly keep = 1000, readonly firstId = 1) {
    this.nextId = firstId
  }

  emit (e: NodeEvent): void {
    const id = this.nextId++
    this.history.push({ id, event: e })
    if (this.history.length > this.keep) this.history.shift()
    for (const l of this.listeners) {
      try { l(e, id) } catch { /* a broken listener must not break the node */ }
    }
  }

  /** The newest event's id (firstId - 1 before any). */
  newestId (): number {
    return this.nextId - 1
  }

  /** Events after `lastId` still in the history (oldest first). */
  since (lastId: number): Array<{ id: number, event: NodeEvent }> {
    return this.history.filter(h => h.id > lastId)
  }

  subscribe (l: (e: NodeEvent, id: number) => void): () => void {
    this.listeners.add(l)
    return () => { this.listeners.delete(l) }
  }
}

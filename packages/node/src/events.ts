/** In-process event bus behind the `/v1/events` server-sent events stream. */
export type NodeEvent =
  | { type: 'attestation', repoId: string, commit: string, envelopeId: string, builder: string, kind: string, via: string }
  | { type: 'decision', repoId: string, commit: string, status: string, narSha256?: string, supportingOrgs?: string[], summary: string }
  | { type: 'build', repoId: string, commit: string, phase: string, ok?: boolean, durationMs?: number }
  | { type: 'equivocation', repoId: string, keyid: string, builder: string }

/**
 * In-process event bus with a bounded history, so an SSE client that reconnects with
 * `Last-Event-ID` gets what it missed (up to the last `keep` events) instead of re-fetching everything.
 */
export class EventBus {
  private readonly listeners = new Set<(e: NodeEvent, id: number) => void>()
  private readonly history: Array<{ id: number, event: NodeEvent }> = []
  private nextId = 1
  constructor (private readonly keep = 1000) {}

  emit (e: NodeEvent): void {
    const id = this.nextId++
    this.history.push({ id, event: e })
    if (this.history.length > this.keep) this.history.shift()
    for (const l of this.listeners) {
      try { l(e, id) } catch { /* a broken listener must not break the node */ }
    }
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

/** In-process event bus behind the `/v1/events` server-sent events stream. */
export type NodeEvent =
  | { type: 'attestation', repoId: string, commit: string, envelopeId: string, builder: string, kind: string, via: string }
  | { type: 'decision', repoId: string, commit: string, status: string, narSha256?: string, supportingOrgs?: string[], summary: string }
  | { type: 'build', repoId: string, commit: string, phase: string, ok?: boolean, durationMs?: number }
  | { type: 'equivocation', repoId: string, keyid: string, builder: string }

export class EventBus {
  private readonly listeners = new Set<(e: NodeEvent) => void>()
  emit (e: NodeEvent): void {
    for (const l of this.listeners) {
      try { l(e) } catch { /* a broken listener must not break the node */ }
    }
  }

  subscribe (l: (e: NodeEvent) => void): () => void {
    this.listeners.add(l)
    return () => { this.listeners.delete(l) }
  }
}

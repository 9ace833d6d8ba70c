/**
 * The node's metrics: a small Prometheus registry of ours (counters, gauges and histograms with
 * labels, text exposition format 0.0.4) beside prom-client's process and event-loop metrics.
 */
import { Registry as PromRegistry, collectDefaultMetrics } from 'prom-client'
import type { Network } from '@quorate/network'
type Labels = Record<string, string>

function labelKey (labels: Labels): string {
  const keys = Object.keys(labels).sort()
  if (keys.length === 0) return ''
  return '{' + keys.map(k => `${k}="${labels[k].replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')}"`).join(',') + '}'
}

interface Metric { name: string, help: string, type: 'counter' | 'gauge' | 'histogram', render: () => string[] }

export class Counter {
  private readonly values = new Map<string, number>()
  inc (labels: Labels = {}, by = 1): void {
    const k = labelKey(labels)
    this.values.set(k, (this.values.get(k) ?? 0) + by)
  }

  lines (name: string): string[] { return [...this.values].map(([k, v]) => `${name}${k} ${v}`) }
}

export class Histogram {
  private readonly series = new Map<string, { counts: number[], sum: number, count: number }>()
  constructor (private readonly buckets: number[]) {}
  observe (value: number, labels: Labels = {}): void {
    const k = labelKey(labels)
    let s = this.series.get(k)
    if (s === undefined) this.series.set(k, s = { counts: this.buckets.map(() => 0), sum: 0, count: 0 })
    this.buckets.forEach((b, i) => { if (value <= b) s!.counts[i]++ })
    s.sum += value
    s.count++
  }

  lines (name: string): string[] {
    const out: string[] = []
    for (const [k, s] of this.series) {
      const inner = k === '' ? '' : k.slice(1, -1) + ','
      this.buckets.forEach((b, i) => out.push(`${name}_bucket{${inner}le="${b}"} ${s.counts[i]}`))
      out.push(`${name}_bucket{${inner}le="+Inf"} ${s.count}`, `${name}_sum${k} ${s.sum}`, `${name}_count${k} ${s.count}`)
    }
    return out
  }
}

export class MetricsRegistry {
  private readonly metrics: Metric[] = []
  /** prom-client's registry of process and Node.js runtime metrics, rendered before ours. */
  private readonly runtime: PromRegistry | undefined

  /** With `runtime: true`, also prom-client's default metrics (process_*, nodejs_* including event-loop lag). */
  constructor (opts: { runtime?: boolean } = {}) {
    if (opts.runtime === true) {
      this.runtime = new PromRegistry()
      collectDefaultMetrics({ register: this.runtime, eventLoopMonitoringPrecision: 20 })
    }
  }

  counter (name: string, help: string): Counter {
    const c = new Counter()
    this.metrics.push({ name, help, type: 'counter', render: () => c.lines(name) })
    return c
  }

  histogram (name: string, help: string, buckets: number[]): Histogram {
    const h = new Histogram(buckets)
    this.metrics.push({ name, help, type: 'histogram', render: () => h.lines(name) })
    return h
  }

  /** A gauge (or counter) read when scraped. */
  collect (name: string, help: string, type: 'gauge' | 'counter', read: () => Array<[Labels, number]>): void {
    this.metrics.push({ name, help, type, render: () => read().map(([l, v]) => `${name}${labelKey(l)} ${v}`) })
  }

  render (): string {
    const out: string[] = []
    for (const m of this.metrics) {
      out.push(`# HELP ${m.name} ${m.help}`, `# TYPE ${m.name} ${m.type}`, ...m.render())
    }
    return out.join('\n') + '\n'
  }

  /** The full exposition for GET /metrics: the runtime's metrics, then ours. */
  async exposition (): Promise<string> {
    const runtime = this.runtime === undefined ? '' : await this.runtime.metrics()
    return (runtime.length > 0 && !runtime.endsWith('\n') ? runtime + '\n' : runtime) + this.render()
  }
}

/** The node's metrics, updated by the node and read by GET /metrics. */
export interface NodeMetrics {
  registry: MetricsRegistry
  builds: Counter
  buildSeconds: Histogram
  /** Wall time of each build phase (root, checkout, fetch, build, pack, hash), by phase and outcome. */
  buildPhaseSeconds: Histogram
  /** Decisions announced (a commit's status or support changed), by status. */
  decisions: Counter
  attestations: Counter
  gossipLatency: Histogram
  publishes: Counter
}

export function createNodeMetrics (opts: { runtime?: boolean } = { runtime: true }): NodeMetrics {
  const registry = new MetricsRegistry(opts)
  return {
    registry,
    builds: registry.counter('quorate_builds_total', 'Builds finished, by outcome (success, failure).'),
    buildSeconds: registry.histogram('quorate_build_duration_seconds', 'Wall time of a build, checkout to hash.', [0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800]),
    buildPhaseSeconds: registry.histogram('quorate_build_phase_duration_seconds', 'Wall time of each build phase (root, checkout, fetch, build, pack, hash) of builds that finished.', [0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600]),
    decisions: registry.counter('quorate_decisions_total', 'Decisions this node announced (a commit\'s status or support changed), by status.'),
    attestations: registry.counter('quorate_attestations_total', 'Envelopes received by gossip or sync, by verdict (accepted, rejected, ignored) and reason.'),
    gossipLatency: registry.histogram('quorate_attestation_latency_seconds', 'From the signer\'s finish time to our acceptance (signer clocks: informative).', [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60]),
    publishes: registry.counter('quorate_publishes_total', 'Own envelopes published, by result (delivered, no-peers, error).')
  }
}

/** Registers the network layer's gauges and counters (read from `network.stats()` when scraped). */
export function collectNetworkMetrics (registry: MetricsRegistry, network: Pick<Network, 'connectedPeers' | 'stats'>): void {
  registry.collect('quorate_peers', 'Connected libp2p peers.', 'gauge', () => [[{}, network.connectedPeers().length]])
  registry.collect('quorate_network_messages_total', 'Gossip and sync messages by path and verdict, as the network layer counted them.', 'counter', () => {
    const s = network.stats()
    return [
      [{ path: 'gossip', verdict: 'received' }, s.gossipReceived], [{ path: 'gossip', verdict: 'accepted' }, s.gossipAccepted],
      [{ path: 'gossip', verdict: 'rejected' }, s.gossipRejected], [{ path: 'gossip', verdict: 'ignored' }, s.gossipIgnored],
      [{ path: 'sync', verdict: 'received' }, s.syncReceived], [{ path: 'sync', verdict: 'accepted' }, s.syncAccepted],
      [{ path: 'sync', verdict: 'rejected' }, s.syncRejected], [{ path: 'sync', verdict: 'ignored' }, s.syncIgnored]
    ]
  })
  registry.collect('quorate_sync_rounds_total', 'Sync rounds by result.', 'counter', () => {
    const s = network.stats()
    return [[{ result: 'ok' }, s.syncRounds], [{ result: 'failed' }, s.syncFailures]]
  })
  registry.collect('quorate_peers_banned_total', 'Peers disconnected and kept out for bad behaviour.', 'counter', () => [[{}, network.stats().peersBanned]])
}

/**
 * Registers the commit-index budget counters: per repository and signer, the ref observations
 * stored whose new commits were over the signer's budget and not indexed, and those commits.
 */
export function collectIndexBudgetMetrics (registry: MetricsRegistry, read: () => Array<{ repoId: string, keyid: string, builder: string | null, commits: number, envelopes: number }>): void {
  const labels = (x: { repoId: string, keyid: string, builder: string | null }): Labels => ({ repo: x.repoId, keyid: x.keyid, builder: x.builder ?? '' })
  registry.collect('quorate_commits_not_indexed_total', 'Commits that ref observations named but the commit indexes left out (over the signer\'s commitIndexBudget), per repository and signer, since the node started.', 'counter',
    () => read().map(x => [labels(x), x.commits]))
  registry.collect('quorate_envelopes_not_indexed_total', 'Ref observations stored whose new commits were over the signer\'s commitIndexBudget (not indexed), per repository and signer, since the node started.', 'counter',
    () => read().map(x => [labels(x), x.envelopes]))
}

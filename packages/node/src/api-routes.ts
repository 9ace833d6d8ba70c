import { QuorateError, type Decision, type DecisionStatus } from '@quorate/core'

/**
 * The node's HTTP contract, shared by the server (`http-api.ts`) and the typed client in the
 * cli: every route's method, path template and response type. Paths are built with `routePath`
 * (which percent-encodes every parameter) and matched with `matchRoute` (which decodes them).
 * It imports only core at run time, so a client loads it without libp2p or LevelDB.
 */

/** One cell of the builder × commit matrix: what each builder said about the commit. */
export interface BuilderCell { builder: string, org: string, result: 'agrees' | 'dissents' | 'voted' | 'failed' | 'equivocated', narSha256?: string }

/** A build the node is running now. */
export interface RunningBuildStatus { repoId: string, commit: string, ref: string, attempt: number, phase: string, startedAt: string, elapsedSeconds: number, phaseElapsedSeconds: number, logBytes: number }
/** A build root the node cannot pull or verify, with what the registry answered (those jobs wait and retry). */
export interface RootProblemStatus { image: string, problem: string, at: string }
/** A build held back by the node's own trouble (disk full, I/O error, sandbox tools missing): nothing was signed; it runs when that clears. */
export interface NodeProblemStatus { repoId: string, commit: string, problem: string, since: string, retries: number }
/** What keeps a node from watching a repository. */
export interface WatchProblemStatus { repoId: string, problem: string, missingBranches?: string[], remoteBranches?: string[] }

/** One signer's ref observations over its commit-index budget for one repository (stored, not indexed). */
export interface CommitsNotIndexed { repoId: string, keyid: string, builder: string | null, commits: number, envelopes: number }

export interface HealthResponse { ok: true, peerId: string, peers: number }
export interface StatusResponse {
  name: string
  builder: string | null
  keyid: string
  publicKey: string
  peerId: string
  multiaddrs: string[]
  peers: string[]
  policyDigest: string
  sandbox: string
  queue: Record<string, number>
  stats: Record<string, unknown>
  repositories: string[]
  running: RunningBuildStatus[]
  problems: WatchProblemStatus[]
  /** Build roots the node cannot pull or verify, with what the registry answered (those jobs wait and retry). */
  rootProblems: RootProblemStatus[]
  /** Builds held back by the node's own trouble (disk full, I/O error, sandbox tools missing); they run when it clears. */
  nodeProblems: NodeProblemStatus[]
  /** Per repository and signer, since the node started: ref observations stored whose new commits were over the signer's commitIndexBudget and not indexed. */
  commitsNotIndexed: CommitsNotIndexed[]
  /** Whether the node may sign: it holds its own logs ('ready'), or it is fetching them back from peers ('recovering': signatures held). */
  ownLog?: { state: 'ready' | 'recovering', reason: string, answeredOrgs: string[], requiredOrgs: number, recovered: number }
}
export interface PolicyResponse { digest: string, policy: unknown, urlsRedacted: true }
export interface ReposResponse { repositories: Array<{ id: string, branches: string[], tags: string[], recipeDigest: string | null, recipeFromRepo: boolean }> }
/** A commit's subject, author and date from the node's git mirror: the author's words, never signed by a builder. */
export interface GitCommitInfo { subject: string, author: string, date: string, unsigned: true }
export interface CommitSummary { git?: GitCommitInfo, commit: string, firstSeen: string, status: DecisionStatus, narSha256: string | null, supportingOrgs: string[], summary: string, builders: BuilderCell[] }
/** A commit some builders named on a ref that threshold organizations did not observe (nor this node's own mirror): not listed in `commits`. */
export interface UnverifiedClaimSummary { commit: string, claimedBy: Array<{ builder: string, org: string }>, refs: string[] }
/**
 * `commits`: commits threshold organizations observed on a ref (or this node's own mirror saw on a
 * watched ref), newest first by git topology. `unverifiedClaims`: the newest others, at most 50,
 * with who claimed them; `unverifiedClaimants`: per claiming builder, how many such commits it names.
 * With `?since=N`: only the listed commits whose decision changed after event N or that entered
 * the list after it, and `removed`, those that left it.
 */
export interface CommitsResponse {
  repoId: string
  /** The newest event id this answer covers: ask `?since=<next>` for what changes after it. */
  next: number
  /** Present when the request gave `?since=`. */
  since?: number
  /** With `?since=`: commits listed at event `since` that are no longer listed. */
  removed?: string[]
  commits: CommitSummary[]
  unverifiedClaims: UnverifiedClaimSummary[]
  unverifiedClaimants: Array<{ builder: string, org: string, commits: number }>
}
export interface CommitResponse {
  repoId: string
  commit: string
  policyDigest: string
  /** This node's own verdict: informative only (a client decides itself from `envelopes`). */
  decision: Decision
  logs: Array<{ builder: string, keyid: string, seq: number, complete: boolean }>
  /** From the node's git mirror, when it has the commit (unsigned). */
  git?: GitCommitInfo
  envelopes: unknown[]
  equivocationProofs: Array<[unknown, unknown]>
}
/** The latest trusted commit of a ref; `onChainOf`: the organizations that have it on their current chains of the ref. */
export interface LatestResponse { repoId: string, ref: string, commit: string, narSha256: string, supportingOrgs: string[], onChainOf: string[], observedBy: string[] }
/** One signer's whole log of a repository, oldest first (untrusted envelopes: check them). */
export interface LogResponse { repoId: string, keyid: string, envelopes: unknown[] }
export interface DigestResponse { narSha256: string, commits: Array<{ repoId: string, commit: string, status: DecisionStatus, trusted: boolean, attestedBy: string[] }> }
export interface PollResponse { ok: true, queue: Record<string, number> }
/**
 * An administrator's rebuild after a final failure was accepted: the node signed its final
 * attempt `reopenedAttempt` again as not final (`envelopeId`; its organization is open again) and
 * queued the build key; the next attempt is `nextAttempt`. Both are absent when the job had given
 * up without a signed final failure (the build could not run): it is only queued again.
 * `status`: the commit's decision on this node now.
 */
export interface RebuildResponse { ok: true, repoId: string, commit: string, nextAttempt: number, reopenedAttempt?: number, envelopeId?: string, status: DecisionStatus }
export interface WebhookResponse { ok: true, polling: true }
/** A non-2xx answer; `code` names why a request was refused where callers can act on it (a rebuild: unknown-commit, already-built, not-final, holding-signatures). */
export interface ErrorResponse { error: string, code?: string }

/** A route: method, path template (`:name` parameters, one path segment each) and what it answers. */
export interface Route<Params extends string = string, Body = unknown> {
  method: 'GET' | 'POST'
  path: string
  /** Present only to carry the response type. */
  readonly body?: Body
  readonly params?: Params
}

function route<Params extends string, Body> (method: 'GET' | 'POST', path: string): Route<Params, Body> {
  return { method, path }
}

export const ROUTES = {
  health: route<never, HealthResponse>('GET', '/healthz'),
  status: route<never, StatusResponse>('GET', '/v1/status'),
  policy: route<never, PolicyResponse>('GET', '/v1/policy'),
  repos: route<never, ReposResponse>('GET', '/v1/repos'),
  /**
   * `?limit=N` (1–1000, default 200): newest first. `?since=<event id>` (an `id:` of `/v1/events`
   * or a previous answer's `next`): only what changed after it, over the whole list (the newest
   * 1000); 410 when the node cannot answer from that event (before its restart, too old, or not
   * one of its ids): fetch the list again without `since`.
   */
  commits: route<'repo', CommitsResponse>('GET', '/v1/repos/:repo/commits'),
  commit: route<'repo' | 'commit', CommitResponse>('GET', '/v1/repos/:repo/commits/:commit'),
  /** `?ref=refs/heads/main` */
  latest: route<'repo', LatestResponse>('GET', '/v1/repos/:repo/latest'),
  digest: route<'narSha256', DigestResponse>('GET', '/v1/digests/:narSha256'),
  /** One signer's log: how a node that lost its data directory gets its own log back. */
  log: route<'repo' | 'keyid', LogResponse>('GET', '/v1/logs/:repo/:keyid'),
  /** File lists by digest (bytes). */
  blob: route<'sha256', Uint8Array>('GET', '/v1/blobs/:sha256'),
  /** Output files by sha256 (bytes). */
  file: route<'sha256', Uint8Array>('GET', '/v1/files/:sha256'),
  /**
   * A build log by the digest its attestation signed (text). `X-Quorate-Log-Complete: false`
   * when the log outgrew the recipe's maxLogBytes: then only its head and tail are kept, and
   * the body does not hash to the signed digest.
   */
  buildLog: route<'sha256', Uint8Array>('GET', '/v1/logs/:sha256'),
  /** Server-sent events. */
  events: route<never, string>('GET', '/v1/events'),
  /** Prometheus text. */
  metrics: route<never, string>('GET', '/metrics'),
  webhook: route<never, WebhookResponse>('POST', '/v1/webhook'),
  adminPoll: route<never, PollResponse>('POST', '/v1/admin/poll'),
  /** Rebuild a commit after this node's final failure (Authorization: Bearer <adminToken>). */
  adminRebuild: route<'repo' | 'commit', RebuildResponse>('POST', '/v1/admin/repos/:repo/commits/:commit/rebuild')
} as const

export type RouteName = keyof typeof ROUTES
export type ResponseOf<N extends RouteName> = NonNullable<(typeof ROUTES)[N]['body']>
export type ParamsOf<N extends RouteName> = NonNullable<(typeof ROUTES)[N]['params']>

/** The path of a route with its parameters filled in, each percent-encoded. */
export function routePath<N extends RouteName> (name: N, params: Record<ParamsOf<N>, string>, query?: Record<string, string>): string {
  const values = params as Record<string, string>
  const path = ROUTES[name].path.replace(/:([a-zA-Z0-9]+)/g, (_m, p: string) => {
    const v = values[p]
    if (v === undefined) throw new TypeError(`route ${name}: parameter "${p}" missing`)
    // URL parsers resolve these segments (also percent-encoded) before sending: they would reach another route.
    if (v === '' || v === '.' || v === '..') throw new QuorateError('USAGE', `${p}: "${v}" cannot be a path segment of ${ROUTES[name].path}`)
    return encodeURIComponent(v)
  })
  const q = query === undefined ? '' : new URLSearchParams(query).toString()
  return q === '' ? path : `${path}?${q}`
}

/** A path segment with malformed percent-encoding: the client's mistake (HTTP 400). */
export class MalformedPathError extends Error {}

const compiled = Object.entries(ROUTES).map(([name, r]) => {
  const names: string[] = []
  const re = new RegExp('^' + r.path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/:([a-zA-Z0-9]+)/g, (_m, p: string) => { names.push(p); return '([^/]+)' }) + '$')
  return { name: name as RouteName, method: r.method, re, names }
})

/**
 * Finds the routes whose path matches `pathname` (any method) and decodes their parameters.
 * Throws MalformedPathError when a parameter's percent-encoding is broken.
 */
export function matchRoute (pathname: string): Array<{ name: RouteName, method: 'GET' | 'POST', params: Record<string, string> }> {
  const out = []
  for (const r of compiled) {
    const m = r.re.exec(pathname)
    if (m === null) continue
    const params: Record<string, string> = {}
    r.names.forEach((p, i) => {
      try {
        params[p] = decodeURIComponent(m[i + 1])
      } catch {
        throw new MalformedPathError(`malformed percent-encoding in the request path (parameter "${p}")`)
      }
    })
    out.push({ name: r.name, method: r.method, params })
  }
  return out
}

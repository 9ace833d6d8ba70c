import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { timingSafeEqual, createHash, createHmac } from 'node:crypto'
import { gzipSync } from 'node:zlib'
import { isCommitSha, isRepoId, isSha256Hex, type Policy } from '@quorate/core'
import { webAsset, WEB_SECURITY_HEADERS } from '@quorate/web'
import { redactUrl } from '@quorate/builder'
import type { BlobFileReader, Store } from '@quorate/store'
import type { Network } from '@quorate/network'
import type { EventBus, NodeEvent } from './events.js'
import type { Logger } from './logger.js'
import type { CommitDecision, Decisions } from './decisions.js'
import type { Outputs } from './outputs.js'
import type { MetricsRegistry } from './metrics.js'
import type { OwnLogStatus } from './own-log-recovery.js'
import type { RebuildAnswer } from './build-jobs.js'
import { latestTrusted } from './ref-views.js'
import { commitLists, type MirrorMoves } from './commit-views.js'
import { matchRoute, MalformedPathError, type CommitsNotIndexed, type GitCommitInfo, type RouteName, type ResponseOf, type RunningBuildStatus, type WatchProblemStatus, type RootProblemStatus, type NodeProblemStatus } from './api-routes.js'

export interface HttpApi { url: string, close: () => Promise<void> }

export interface HttpApiInit {
  host: string
  port: number
  /** Named in error messages (the node config file). */
  configFile: string
  adminToken?: string
  /** Reads private repositories' outputs, logs and file lists (as does the adminToken). */
  readToken?: string
  webhookSecret?: string
  /** Server-sent events: clients at once in total (default 64) and per client address (default 8). */
  sseMaxClients?: number
  sseMaxClientsPerAddress?: number
  /** Events at most replayed to a reconnecting client (Last-Event-ID), newest kept. Default 200. */
  sseReplay?: number
}

/** What `/v1/status` reports besides the parts below. */
export interface NodeStatus {
  name: string
  builder: string | null
  keyid: string
  publicKey: string
  sandbox: string
  queue: Record<string, number>
  stats: Record<string, unknown>
  /** Builds running now, with phase and elapsed time. */
  running?: RunningBuildStatus[]
  /** What keeps the node from watching a repository (fetch errors, watched branches the remote lacks). */
  problems?: WatchProblemStatus[]
  rootProblems?: RootProblemStatus[]
  nodeProblems?: NodeProblemStatus[]
  /** Per repository and signer: ref observations over the commit-index budget (stored, not indexed). */
  commitsNotIndexed?: CommitsNotIndexed[]
  /** Whether this node may sign: it holds its own logs, or it is fetching them back from peers (DESIGN.md "A node never forks its own log"). */
  ownLog?: OwnLogStatus
}

/** The narrow parts of the node the HTTP API reads (and the two admin actions it may trigger). */
export interface HttpApiComponents {
  policy: Policy
  decisions: Pick<Decisions, 'decide' | 'decision' | 'logCompleteness' | 'refEpoch'>
  store: Pick<Store, 'commitInfos' | 'commitsWithDigest' | 'recentRefObservations' | 'equivocationProofs' | 'envelopesAfter'>
  /** This node's own builder key: its ref observations come from the node's own git mirror (they verify a commit). */
  ownKeyid?: string
  /** What this node's own git mirror saw on watched refs (lists those commits on an observer node too). */
  mirror?: Pick<MirrorMoves, 'moves'>
  outputs: Pick<Outputs, 'openFileList' | 'file' | 'log' | 'isPrivate'>
  network: Pick<Network, 'peerId' | 'multiaddrs' | 'connectedPeers' | 'stats'>
  events: Pick<EventBus, 'since' | 'subscribe' | 'newestId' | 'firstId'>
  metrics: { registry: Pick<MetricsRegistry, 'exposition'> }
  status: () => Promise<NodeStatus>
  /** Subject, author and date of commits from the node's git mirror (unsigned); commits it lacks are left out. */
  gitInfo?: (repoId: string, commits: string[]) => Promise<Map<string, { subject: string, author: string, date: string }>>
  /** Fetches repositories now (webhook, admin poll). */
  poll: (repoId?: string) => Promise<void>
  /** An administrator's rebuild after a final failure (build-jobs' requestRebuild); `by` says who asked (the client address). */
  requestRebuild?: (repoId: string, commit: string, by: string) => Promise<RebuildAnswer>
  logger: Logger
}


class HttpError extends Error {
  constructor (readonly status: number, message: string, readonly code?: string) { super(message) }
}

function sendJson (res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, null, 2)
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'x-content-type-options': 'nosniff',
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(text)
  })
  res.end(text)
}

/** JSON already serialized (a cached page). */
function sendJsonBytes (res: ServerResponse, status: number, body: Uint8Array, headers: Record<string, string> = {}): void {
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'x-content-type-options': 'nosniff',
    'cache-control': 'no-store',
    'content-length': body.byteLength,
    ...headers
  })
  res.end(body)
}

/** A JSON answer typed by the shared route table. */
function reply<N extends RouteName> (_route: N, res: ServerResponse, status: number, body: ResponseOf<N>): void {
  sendJson(res, status, body)
}

/**
 * The one-commit answer (CommitResponse) but its `git` field, serialized once per decision: kept
 * with the decision (so dropped exactly when it is: a new envelope for the commit or a commit it
 * introduces, an equivocation proof for the repository, a policy change) and only once the logs
 * it reports are complete (an incomplete log can be completed by an envelope of another commit).
 * The stored envelopes are spliced in as the store holds them (JSON that passed the envelope
 * checks when it was stored): never parsed and serialized again.
 */
const commitBodies = new WeakMap<CommitDecision, Buffer>()

async function commitAnswerBody (answer: CommitDecision, decisions: Pick<Decisions, 'logCompleteness'>): Promise<Buffer> {
  const cached = commitBodies.get(answer)
  if (cached !== undefined) return cached
  const logs = await decisions.logCompleteness(answer)
  const { decision } = answer
  const head: Omit<ResponseOf<'commit'>, 'envelopes' | 'equivocationProofs' | 'git'> = { repoId: decision.repoId, commit: decision.commit, policyDigest: decision.policyDigest, decision, logs }
  const text = JSON.stringify(head, null, 2)
  const parts: Uint8Array[] = [Buffer.from(text.slice(0, text.lastIndexOf('}')).trimEnd() + ',\n  "envelopes": [')]
  answer.envelopes.forEach((e, i) => { if (i > 0) parts.push(COMMA); parts.push(e) })
  parts.push(Buffer.from('],\n  "equivocationProofs": ['))
  answer.proofs.forEach(([a, b], i) => { parts.push(Buffer.from(i > 0 ? ',[' : '[')); parts.push(a, COMMA, b, Buffer.from(']')) })
  parts.push(Buffer.from(']'))
  const body = Buffer.concat(parts)
  if (logs.every(l => l.complete)) commitBodies.set(answer, body)
  return body
}
const COMMA = Buffer.from(',')

function sendCommitAnswer (res: ServerResponse, body: Buffer, git: GitCommitInfo | undefined): void {
  const tail = Buffer.from(git === undefined ? '\n}' : `,\n  "git": ${JSON.stringify(git)}\n}`)
  res.writeHead(200, {
    'content-type': 'application/json; charset=utf-8',
    'x-content-type-options': 'nosniff',
    'cache-control': 'no-store',
    'content-length': body.byteLength + tail.byteLength
  })
  res.write(body)
  res.end(tail)
}

async function readBody (req: IncomingMessage, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > limit) throw new HttpError(413, `request body over ${limit} bytes`)
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks)
}

/** Forge webhook signature (GitHub, Gitea, Forgejo): X-Hub-Signature-256: sha256=HMAC-SHA256(secret, body). */
export function webhookSignatureMatches (body: Buffer, header: string | undefined, secret: string): boolean {
  if (header === undefined || !/^sha256=[0-9a-f]{64}$/.test(header)) return false
  const expected = createHmac('sha256', secret).update(body).digest()
  return timingSafeEqual(expected, Buffer.from(header.slice(7), 'hex'))
}

function tokenMatches (header: string | undefined, token: string | undefined): boolean {
  if (token === undefined || header === undefined || !header.startsWith('Bearer ')) return false
  const a = createHash('sha256').update(header.slice(7)).digest()
  const b = createHash('sha256').update(token).digest()
  return timingSafeEqual(a, b)
}

/**
 * The node's HTTP API: JSON, read-only without a token. Admin routes need
 * `Authorization: Bearer <adminToken>` and are refused when no token is configured.
 */
export async function httpApi (init: HttpApiInit, c: HttpApiComponents): Promise<HttpApi> {
  const { policy, store, decisions, network, logger } = c
  const sseMax = init.sseMaxClients ?? 64
  const ssePerAddress = init.sseMaxClientsPerAddress ?? 8
  const sseReplay = init.sseReplay ?? 200
  const sseClients = new Map<string, number>()
  /** Gzipped cached pages, for as long as the page itself is cached. */
  const gzipped = new WeakMap<Uint8Array, Buffer>()
  // Pages cached per repository until something they show may have changed; `?since=` answers.
  const lists = commitLists({ policy, store, decisions, events: c.events, ownKeyid: c.ownKeyid, mirror: c.mirror, gitInfo: gitOf })
  let sseTotal = 0
  type Handler = (p: Record<string, string>, req: IncomingMessage, res: ServerResponse) => Promise<void>
  const handlers: Record<RouteName, Handler> = {
    health: async (_p, _r, res) => {
      reply('health', res, 200, { ok: true, peerId: network.peerId, peers: network.connectedPeers().length })
    },
    status: async (_p, _r, res) => {
      const s = await c.status()
      reply('status', res, 200, {
        name: s.name,
        builder: s.builder,
        keyid: s.keyid,
        publicKey: s.publicKey,
        peerId: network.peerId,
        multiaddrs: network.multiaddrs(),
        peers: network.connectedPeers(),
        policyDigest: policy.digest,
        sandbox: s.sandbox,
        queue: s.queue,
        stats: { ...s.stats, network: network.stats() },
        repositories: [...policy.repositories.keys()],
        running: s.running ?? [],
        problems: s.problems ?? [],
        rootProblems: s.rootProblems ?? [],
        nodeProblems: s.nodeProblems ?? [],
        commitsNotIndexed: s.commitsNotIndexed ?? [],
        ...(s.ownLog !== undefined ? { ownLog: s.ownLog } : {})
      })
    },
    policy: async (_p, _r, res) => {
      // Repository URLs may carry credentials: never serve them (the digest is of the real file).
      const redacted = { ...policy.document, repositories: policy.document.repositories.map(r => ({ ...r, url: redactUrl(r.url) })) }
      reply('policy', res, 200, { digest: policy.digest, policy: redacted, urlsRedacted: true })
    },
    repos: async (_p, _r, res) => {
      reply('repos', res, 200, { repositories: [...policy.repositories.values()].map(r => ({ id: r.id, branches: r.branches, tags: r.tags, recipeDigest: r.recipeDigest ?? null, recipeFromRepo: r.recipeFromRepo })) })
    },
    commits: async (p, req, res) => {
      const repoId = repoParam(p.repo)
      const query = new URL(req.url ?? '/', 'http://x').searchParams
      const limitText = query.get('limit')
      const sinceText = query.get('since')
      // Verified commits (threshold organizations observed them on a ref, or this node's own
      // mirror saw them on a watched ref), newest first by git topology, never by first-seen time:
      // one member key flooding observations of invented commits fills only its own organization's
      // slice, and those commits are shown apart as unverified claims (issue 14 item 5).
      if (sinceText !== null) {
        if (limitText !== null) throw new HttpError(400, '?since= answers over the whole list (the newest 1000 commits): leave out ?limit=')
        const since = /^[0-9]{1,16}$/.test(sinceText) ? Number(sinceText) : NaN
        if (!Number.isSafeInteger(since)) throw new HttpError(400, '?since= takes an event id: an "id:" of /v1/events or the "next" of a previous answer')
        const out = await lists.changedSince(repoId, since)
        if (out instanceof Uint8Array) { sendJsonBytes(res, 200, out); return }
        sendJson(res, 410, { error: `${out.gone}: fetch the list again without ?since= and continue from its "next"`, next: out.next })
        return
      }
      const limit = limitText === null ? 200 : Number(limitText)
      if (!Number.isSafeInteger(limit) || limit < 1 || limit > 1000) throw new HttpError(400, '?limit= takes a whole number from 1 to 1000 (default 200)')
      const page = await lists.page(repoId, limit)
      // A page is about 1.3 KB per commit: gzip it once per cached page for clients that accept it (browsers).
      if (/\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''))) {
        let zipped = gzipped.get(page)
        if (zipped === undefined) gzipped.set(page, zipped = gzipSync(page, { level: 6 }))
        sendJsonBytes(res, 200, zipped, { 'content-encoding': 'gzip', vary: 'accept-encoding' })
      } else {
        sendJsonBytes(res, 200, page, { vary: 'accept-encoding' })
      }
    },
    commit: async (p, _r, res) => {
      const repoId = repoParam(p.repo)
      const commit = p.commit
      if (!isCommitSha(commit)) throw new HttpError(400, 'commit must be a full lowercase hex commit id')
      const [answer, git] = await Promise.all([decisions.decide(repoId, commit), gitOf(repoId, [commit])])
      const g = git.get(commit)
      sendCommitAnswer(res, await commitAnswerBody(answer, decisions), g === undefined ? undefined : { ...g, unsigned: true })
    },
    blob: async (p, req, res) => {
      if (!isSha256Hex(p.sha256)) throw new HttpError(400, 'blob id must be a sha256 hex digest')
      await requireReader(p.sha256, req)
      // Any peer holding it can serve it: fetched by content address (to disk, by range) and checked by the network layer.
      const blob = await c.outputs.openFileList(p.sha256, { fromPeers: true })
      if (blob === undefined) throw new HttpError(404, 'no such blob on this node or its peers')
      try {
        await sendBlob(req, res, blob)
      } finally {
        await blob.close()
      }
    },
    file: async (p, req, res) => {
      if (!isSha256Hex(p.sha256)) throw new HttpError(400, 'file id must be a sha256 hex digest')
      await requireReader(p.sha256, req)
      const body = await c.outputs.file(p.sha256)
      if (body === undefined) throw new HttpError(404, 'no such output file on this node')
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.byteLength, 'x-content-type-options': 'nosniff', 'content-disposition': 'attachment' })
      res.end(body)
    },
    buildLog: async (p, req, res) => {
      if (!isSha256Hex(p.sha256)) throw new HttpError(400, 'log id must be the sha256 hex digest of the build-log byproduct')
      await requireReader(p.sha256, req)
      const log = await c.outputs.log(p.sha256, { fromPeers: true })
      if (log === undefined) throw new HttpError(404, 'no build log with this digest on this node or its peers (a node keeps the logs of its own builds, within its retention)')
      res.writeHead(200, {
        'content-type': 'text/plain; charset=utf-8',
        'content-length': log.bytes.byteLength,
        'x-content-type-options': 'nosniff',
        'content-security-policy': 'sandbox',
        'cache-control': 'no-store',
        'x-quorate-log-complete': String(log.complete),
        'x-quorate-log-total-bytes': String(log.totalBytes)
      })
      res.end(log.bytes)
    },
    events: async (_p, req, res) => {
      // found by fuzzing: a HEAD got no answer at all (the head of an event stream is only sent with its first body bytes, which HEAD drops)
      if (req.method === 'HEAD') { res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' }); res.end(); return }
      const address = req.socket.remoteAddress ?? '?'
      if (sseTotal >= sseMax) throw new HttpError(503, `too many event streams open on this node (${sseMax}); try again later`)
      if ((sseClients.get(address) ?? 0) >= ssePerAddress) throw new HttpError(429, `too many event streams from ${address} (${ssePerAddress}); close one first`)
      sseTotal++
      sseClients.set(address, (sseClients.get(address) ?? 0) + 1)
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' })
      res.write(': quorate events\n\n')
      const write = (e: NodeEvent, id: number): void => {
        // A client that stops reading is dropped rather than buffered without bound.
        if (res.writableLength > 1024 * 1024) { res.destroy(); return }
        res.write(`id: ${id}\nevent: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`)
      }
      // A reconnecting client (EventSource sends Last-Event-ID) gets what it missed first, at most the newest `sseReplay`.
      const last = Number(req.headers['last-event-id'])
      if (Number.isSafeInteger(last) && last >= 0) for (const h of c.events.since(last).slice(-sseReplay)) write(h.event, h.id)
      const unsubscribe = c.events.subscribe(write)
      const ping = setInterval(() => res.write(': ping\n\n'), 15_000)
      res.on('close', () => {
        clearInterval(ping)
        unsubscribe()
        sseTotal--
        const n = (sseClients.get(address) ?? 1) - 1
        if (n <= 0) sseClients.delete(address); else sseClients.set(address, n)
      })
    },
    metrics: async (_p, _r, res) => {
      const text = await c.metrics.registry.exposition()
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'content-length': Buffer.byteLength(text) })
      res.end(text)
    },
    latest: async (p, req, res) => {
      const repoId = repoParam(p.repo)
      const ref = new URL(req.url ?? '/', 'http://x').searchParams.get('ref') ?? ''
      if (!/^refs\/[^\s]{1,250}$/.test(ref)) throw new HttpError(400, 'give ?ref= with a full ref name such as refs/heads/main')
      // DESIGN.md: the newest trusted commit that threshold organizations have on their current
      // chains of the ref (built from their signed observations, never from arrival time).
      const latest = await latestTrusted(store, policy, repoId, ref, async (r, c) => ({ decision: await decisions.decision(r, c) }))
      if (latest === undefined) throw new HttpError(404, `no trusted commit that threshold organizations have on their current chains of ${ref} yet`)
      reply('latest', res, 200, { repoId, ref, commit: latest.commit, narSha256: latest.decision.trusted!.narSha256, supportingOrgs: latest.decision.trusted!.supportingOrgs, onChainOf: latest.chainOrgs, observedBy: latest.observedBy })
    },
    log: async (p, _r, res) => {
      // One signer's whole log: how a node that lost its data directory fetches its own log
      // back before it signs again (only its own signatures count, so it is safe to serve).
      const repoId = repoParam(p.repo)
      if (!/^[0-9a-f]{64}$/.test(p.keyid)) throw new HttpError(400, 'give a keyid (64 lowercase hex)')
      const envelopes: unknown[] = []
      for await (const bytes of store.envelopesAfter(repoId, p.keyid, -1)) envelopes.push(JSON.parse(Buffer.from(bytes).toString('utf8')))
      reply('log', res, 200, { repoId, keyid: p.keyid, envelopes })
    },
    digest: async (p, _r, res) => {
      const digest = p.narSha256
      if (!isSha256Hex(digest)) throw new HttpError(400, 'give a 64-hex narSha256')
      const out = []
      for (const { repoId, commit } of await store.commitsWithDigest(digest)) {
        if (!policy.repositories.has(repoId)) continue
        const decision = await decisions.decision(repoId, commit)
        out.push({ repoId, commit, status: decision.status, trusted: decision.trusted?.narSha256 === digest, attestedBy: decision.results.find(r => r.narSha256 === digest)?.builders ?? [] })
      }
      reply('digest', res, 200, { narSha256: digest, commits: out })
    },
    webhook: async (_p, req, res) => {
      if (init.webhookSecret === undefined) throw new HttpError(403, 'webhooks are disabled: set "webhookSecret" in the node config')
      const body = await readBody(req, 1024 * 1024)
      const header = req.headers['x-hub-signature-256']
      if (!webhookSignatureMatches(body, Array.isArray(header) ? header[0] : header, init.webhookSecret)) throw new HttpError(401, 'bad or missing X-Hub-Signature-256 (HMAC-SHA256 of the body with the shared secret)')
      void c.poll()
      reply('webhook', res, 202, { ok: true, polling: true })
    },
    adminPoll: async (_p, req, res) => {
      requireAdmin(req, 'poll')
      await c.poll()
      reply('adminPoll', res, 200, { ok: true, queue: (await c.status()).queue })
    },
    adminRebuild: async (p, req, res) => {
      requireAdmin(req, 'rebuild')
      const repoId = repoParam(p.repo)
      if (!isCommitSha(p.commit)) throw new HttpError(400, 'commit must be a full lowercase hex commit id')
      if (c.requestRebuild === undefined) throw new HttpError(409, 'this node does not build (its key is not in the policy): nothing to rebuild', 'unknown-commit')
      const by = req.socket.remoteAddress ?? '?'
      // A reopening is signed: a node still fetching its own log back signs nothing (and would hold this request).
      if ((await c.status()).ownLog?.state === 'recovering') throw new HttpError(409, 'this node is still fetching its own log back from its peers and signs nothing until then ("HOLDING SIGNATURES" in quorate status); ask again once it holds its log', 'holding-signatures')
      const answer = await c.requestRebuild(repoId, p.commit, by)
      if (!answer.ok) {
        logger.info('admin rebuild refused', { repo: repoId, commit: p.commit.slice(0, 12), by, code: answer.code, reason: answer.message })
        throw new HttpError(answer.code === 'unknown-commit' ? 404 : 409, answer.message, answer.code)
      }
      const decision = await decisions.decision(repoId, p.commit)
      reply('adminRebuild', res, 200, { ...answer, status: decision.status })
    }
  }

  async function gitOf (repoId: string, commits: string[]): Promise<Map<string, { subject: string, author: string, date: string }>> {
    if (c.gitInfo === undefined) return new Map()
    try {
      return await c.gitInfo(repoId, commits)
    } catch (err) {
      logger.debug('git metadata unavailable', { repo: repoId, error: (err as Error).message })
      return new Map()
    }
  }

  function repoParam (id: string): string {
    if (!isRepoId(id) || !policy.repositories.has(id)) throw new HttpError(404, 'unknown repository: not in this node\'s policy')
    return id
  }

  /** Private repositories' content needs the read (or admin) token; everything else is public. */
  async function requireReader (sha256: string, req: IncomingMessage): Promise<void> {
    if (!await c.outputs.isPrivate(sha256)) return
    const auth = req.headers.authorization
    if (tokenMatches(auth, init.readToken) || tokenMatches(auth, init.adminToken)) return
    throw new HttpError(401, 'this belongs to a private repository: send "Authorization: Bearer <readToken>" (quorate … --token TOKEN)')
  }

  /** Admin routes: refused (and logged) without the node's admin token; disabled when it has none. */
  function requireAdmin (req: IncomingMessage, action: string): void {
    const by = req.socket.remoteAddress ?? '?'
    if (init.adminToken === undefined) {
      logger.warn('admin request refused', { action, by, reason: 'no admin token configured' })
      throw new HttpError(403, `admin endpoints are disabled on this node: set "adminTokenFile" (or "adminToken") in ${init.configFile}`)
    }
    if (!tokenMatches(req.headers.authorization, init.adminToken)) {
      logger.warn('admin request refused', { action, by, reason: req.headers.authorization === undefined ? 'no token' : 'wrong token' })
      throw new HttpError(401, 'admin endpoints need "Authorization: Bearer <adminToken>" with this node\'s admin token')
    }
  }

  const sockets = new Set<import('node:net').Socket>()
  const server = createServer((req, res) => {
    const method = req.method ?? 'GET'
    let path = '(unparsable)'
    void (async () => {
      try {
        let url: URL
        try { url = new URL(req.url ?? '/', 'http://x') } catch { throw new HttpError(400, 'the request path is not a valid URL path') }
        path = url.pathname
        if (method === 'GET' || method === 'HEAD') {
          const asset = webAsset(url.pathname)
          if (asset !== undefined) {
            res.writeHead(200, { 'content-type': asset.contentType, 'content-length': asset.body.byteLength, 'cache-control': 'no-cache', ...WEB_SECURITY_HEADERS })
            res.end(method === 'HEAD' ? undefined : asset.body)
            return
          }
        }
        let matches
        try { matches = matchRoute(url.pathname) } catch (err) {
          if (err instanceof MalformedPathError) throw new HttpError(400, err.message)
          throw err
        }
        if (matches.length === 0) throw new HttpError(404, `no route ${url.pathname}`)
        const match = matches.find(r => r.method === method || (r.method === 'GET' && method === 'HEAD'))
        if (match === undefined) throw new HttpError(405, `${method} is not allowed on ${url.pathname}`)
        await handlers[match.name](match.params, req, res)
      } catch (err) {
        const status = err instanceof HttpError ? err.status : 500
        if (status === 500) logger.error('http error', { path, error: (err as Error).message })
        if (!res.headersSent) sendJson(res, status, { error: err instanceof HttpError ? err.message : 'internal error', ...(err instanceof HttpError && err.code !== undefined ? { code: err.code } : {}) })
        else res.end()
      }
    })()
  })
  server.on('connection', s => { sockets.add(s); s.on('close', () => sockets.delete(s)) })
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(Object.assign(new Error(`${init.configFile}: http: cannot listen on ${init.host}:${init.port} (${err.code ?? err.message}); pick another port`), { code: 'CONFIG_INVALID' })))
    server.listen(init.port, init.host, () => resolve())
  })
  const addr = server.address() as import('node:net').AddressInfo
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address
  return {
    url: `http://${host}:${addr.port}`,
    close: async () => {
      for (const s of sockets) s.destroy()
      lists.stop()
      await new Promise<void>(resolve => server.close(() => resolve()))
    }
  }
}

/**
 * `Range: bytes=A-B`, `bytes=A-` or `bytes=-N` (one range) of a blob of `size` bytes: the range,
 * 'unsatisfiable' (416), or undefined for the whole blob (no header, several ranges or another
 * unit, which RFC 9110 lets a server answer with the whole).
 */
export function parseByteRange (header: string | undefined, size: number): { start: number, end: number } | 'unsatisfiable' | undefined {
  if (header === undefined) return undefined
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim())
  if (m === null || (m[1] === '' && m[2] === '')) return undefined
  if (m[1] === '') {
    const suffix = Number(m[2])
    if (suffix === 0 || size === 0) return 'unsatisfiable'
    return { start: Math.max(0, size - suffix), end: size - 1 }
  }
  const start = Number(m[1])
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1)
  if (!Number.isSafeInteger(start) || start >= size) return 'unsatisfiable'
  if (end < start) return undefined
  return { start, end }
}

/** Streams a blob (or the range asked for) in 1 MiB pieces, waiting for the client to drain: never held whole. */
async function sendBlob (req: IncomingMessage, res: ServerResponse, blob: BlobFileReader): Promise<void> {
  const range = parseByteRange(req.headers.range, blob.size)
  const headers = { 'content-type': 'application/octet-stream', 'x-content-type-options': 'nosniff', 'accept-ranges': 'bytes' }
  if (range === 'unsatisfiable') {
    res.writeHead(416, { ...headers, 'content-range': `bytes */${blob.size}`, 'content-length': 0 })
    res.end()
    return
  }
  const start = range?.start ?? 0
  const end = range?.end ?? blob.size - 1
  res.writeHead(range === undefined ? 200 : 206, {
    ...headers,
    'content-length': end - start + 1,
    ...(range !== undefined ? { 'content-range': `bytes ${start}-${end}/${blob.size}` } : {})
  })
  if (req.method === 'HEAD') { res.end(); return }
  try {
    for (let at = start; at <= end && !res.destroyed;) {
      const piece = await blob.read(at, Math.min(1024 * 1024, end + 1 - at))
      if (piece.byteLength === 0) throw new Error('the blob ended early')
      at += piece.byteLength
      // The reader reuses its buffer: wait until this piece is written out (or the client is gone).
      await new Promise<void>(resolve => {
        const done = (): void => { res.off('close', done); resolve() }
        res.on('close', done)
        res.write(piece, done)
      })
    }
    res.end()
  } catch (err) {
    res.destroy(err as Error) // a body cut short is an error the client sees, never a shorter blob
  }
}

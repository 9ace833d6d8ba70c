import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { timingSafeEqual, createHash, createHmac } from 'node:crypto'
import { isCommitSha, isRepoId, isSha256Hex, refObservers, type Decision } from '@quorate/core'
import { webAsset, WEB_SECURITY_HEADERS } from '@quorate/web'
import { redactUrl } from '@quorate/builder'
import type { QuorateNode } from './node.js'
import type { NodeEvent } from './events.js'
import type { Logger } from './logger.js'

export interface HttpApi { url: string, close: () => Promise<void> }

/** One cell of the builder × commit matrix: what each builder said about the commit. */
export interface BuilderCell { builder: string, org: string, result: 'agrees' | 'dissents' | 'voted' | 'failed' | 'equivocated', narSha256?: string }

function builderCells (d: Decision): BuilderCell[] {
  const cells = new Map<string, BuilderCell>()
  for (const f of d.failures) cells.set(f.builder, { builder: f.builder, org: f.org, result: 'failed' })
  for (const v of d.votes) cells.set(v.builder, { builder: v.builder, org: v.org, result: d.status === 'trusted' ? 'dissents' : 'voted', narSha256: v.narSha256 })
  for (const v of d.supporters) cells.set(v.builder, { builder: v.builder, org: v.org, result: 'agrees', narSha256: v.narSha256 })
  for (const e of d.equivocators) cells.set(e.builder, { builder: e.builder, org: e.org, result: 'equivocated' })
  return [...cells.values()].sort((a, b) => a.builder < b.builder ? -1 : 1)
}

class HttpError extends Error {
  constructor (readonly status: number, message: string) { super(message) }
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
export async function startHttpApi (node: QuorateNode, logger: Logger): Promise<HttpApi> {
  const { config, policy, store } = node
  const routes: Array<[string, RegExp, (m: RegExpMatchArray, req: IncomingMessage, res: ServerResponse) => Promise<void>]> = [
    ['GET', /^\/healthz$/, async (_m, _r, res) => {
      sendJson(res, 200, { ok: true, peerId: node.network.peerId, peers: node.network.connectedPeers().length })
    }],
    ['GET', /^\/v1\/status$/, async (_m, _r, res) => {
      sendJson(res, 200, {
        name: config.name,
        builder: node.builderName ?? null,
        keyid: node.key.keyid,
        publicKey: node.key.publicKeyHex,
        peerId: node.network.peerId,
        multiaddrs: node.network.multiaddrs(),
        peers: node.network.connectedPeers(),
        policyDigest: policy.digest,
        sandbox: config.sandbox,
        queue: await node.queueSummary(),
        // Build roots the node could not pull or verify (what the registry answered); the jobs wait and retry.
        rootProblems: [...node.rootCache.problems].map(([image, p]) => ({ image, problem: p.message, at: new Date(p.at).toISOString() })),
        stats: { ...node.stats, network: node.network.stats() },
        repositories: [...policy.repositories.keys()]
      })
    }],
    ['GET', /^\/v1\/policy$/, async (_m, _r, res) => {
      // Repository URLs may carry credentials: never serve them (the digest is of the real file).
      const redacted = { ...policy.document, repositories: policy.document.repositories.map(r => ({ ...r, url: redactUrl(r.url) })) }
      sendJson(res, 200, { digest: policy.digest, policy: redacted, urlsRedacted: true })
    }],
    ['GET', /^\/v1\/repos$/, async (_m, _r, res) => {
      sendJson(res, 200, { repositories: [...policy.repositories.values()].map(r => ({ id: r.id, branches: r.branches, tags: r.tags, recipeDigest: r.recipeDigest ?? null, recipeFromRepo: r.recipeFromRepo })) })
    }],
    ['GET', /^\/v1\/repos\/([^/]+)\/commits$/, async (m, _r, res) => {
      const repoId = repoParam(m[1])
      const commits = await store.commitsOf(repoId, 200)
      const out = []
      for (const c of commits) {
        const { decision } = await node.decide(repoId, c.commit)
        out.push({ commit: c.commit, firstSeen: new Date(c.firstSeen).toISOString(), status: decision.status, narSha256: decision.trusted?.narSha256 ?? null, supportingOrgs: decision.trusted?.supportingOrgs ?? [], summary: decision.summary, builders: builderCells(decision) })
      }
      sendJson(res, 200, { repoId, commits: out })
    }],
    ['GET', /^\/v1\/repos\/([^/]+)\/commits\/([^/]+)$/, async (m, _r, res) => {
      const repoId = repoParam(m[1])
      const commit = m[2]
      if (!isCommitSha(commit)) throw new HttpError(400, 'commit must be a full lowercase hex commit id')
      const { decision, envelopes, proofs } = await node.decide(repoId, commit)
      sendJson(res, 200, { repoId, commit, policyDigest: policy.digest, decision, logs: await node.logCompleteness(decision), envelopes, equivocationProofs: proofs })
    }],
    ['GET', /^\/v1\/blobs\/([^/]+)$/, async (m, _r, res) => {
      if (!isSha256Hex(m[1])) throw new HttpError(400, 'blob id must be a sha256 hex digest')
      let blob = await store.getBlob(m[1])
      if (blob === undefined) {
        // Any peer holding it can serve it: fetched by content address and checked by the network layer.
        blob = await node.network.fetchBlob(m[1], { timeoutMs: 10_000 })
        if (blob !== undefined) await store.putBlob(m[1], blob)
      }
      if (blob === undefined) throw new HttpError(404, 'no such blob on this node or its peers')
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': blob.byteLength, 'x-content-type-options': 'nosniff' })
      res.end(blob)
    }],
    ['GET', /^\/v1\/files\/([^/]+)$/, async (m, _r, res) => {
      if (!isSha256Hex(m[1])) throw new HttpError(400, 'file id must be a sha256 hex digest')
      let body: Buffer
      try { body = await readFile(join(config.dataDir, 'files', m[1])) } catch { throw new HttpError(404, 'no such output file on this node') }
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.byteLength, 'x-content-type-options': 'nosniff', 'content-disposition': 'attachment' })
      res.end(body)
    }],
    ['GET', /^\/v1\/events$/, async (_m, req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' })
      res.write(': quorate events\n\n')
      const write = (e: NodeEvent, id: number): void => { res.write(`id: ${id}\nevent: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`) }
      // A reconnecting client (EventSource sends Last-Event-ID) gets what it missed first.
      const last = Number(req.headers['last-event-id'])
      if (Number.isSafeInteger(last) && last >= 0) for (const h of node.events.since(last)) write(h.event, h.id)
      const unsubscribe = node.events.subscribe(write)
      const ping = setInterval(() => res.write(': ping\n\n'), 15_000)
      req.on('close', () => { clearInterval(ping); unsubscribe() })
    }],
    ['GET', /^\/metrics$/, async (_m, _r, res) => {
      const text = node.metrics.registry.render()
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'content-length': Buffer.byteLength(text) })
      res.end(text)
    }],
    ['GET', /^\/v1\/repos\/([^/]+)\/latest$/, async (m, req, res) => {
      const repoId = repoParam(m[1])
      const ref = new URL(req.url ?? '/', 'http://x').searchParams.get('ref') ?? ''
      if (!/^refs\/[^\s]{1,250}$/.test(ref)) throw new HttpError(400, 'give ?ref= with a full ref name such as refs/heads/main')
      for (const c of await store.commitsOf(repoId, 1000)) {
        const { decision } = await node.decide(repoId, c.commit)
        if (decision.status !== 'trusted') continue
        const seen = refObservers(decision, ref)
        if (!seen.reached) continue
        sendJson(res, 200, { repoId, ref, commit: c.commit, narSha256: decision.trusted!.narSha256, supportingOrgs: decision.trusted!.supportingOrgs, observedBy: seen.orgs, firstSeen: new Date(c.firstSeen).toISOString() })
        return
      }
      throw new HttpError(404, `no trusted commit that a quorum of organizations saw on ${ref} yet`)
    }],
    ['GET', /^\/v1\/digests\/([^/]+)$/, async (m, _r, res) => {
      if (!isSha256Hex(m[1])) throw new HttpError(400, 'give a 64-hex narSha256')
      const out = []
      for (const { repoId, commit } of await store.commitsWithDigest(m[1])) {
        if (!policy.repositories.has(repoId)) continue
        const { decision } = await node.decide(repoId, commit)
        out.push({ repoId, commit, status: decision.status, trusted: decision.trusted?.narSha256 === m[1], attestedBy: decision.results.find(r => r.narSha256 === m[1])?.builders ?? [] })
      }
      sendJson(res, 200, { narSha256: m[1], commits: out })
    }],
    ['POST', /^\/v1\/webhook$/, async (_m, req, res) => {
      if (config.webhookSecret === undefined) throw new HttpError(403, 'webhooks are disabled: set "webhookSecret" in the node config')
      const body = await readBody(req, 1024 * 1024)
      const header = req.headers['x-hub-signature-256']
      if (!webhookSignatureMatches(body, Array.isArray(header) ? header[0] : header, config.webhookSecret)) throw new HttpError(401, 'bad or missing X-Hub-Signature-256 (HMAC-SHA256 of the body with the shared secret)')
      void node.pollNow()
      sendJson(res, 202, { ok: true, polling: true })
    }],
    ['POST', /^\/v1\/admin\/poll$/, async (_m, req, res) => {
      requireAdmin(req)
      await node.pollNow()
      sendJson(res, 200, { ok: true, queue: await node.queueSummary() })
    }]
  ]

  function repoParam (raw: string): string {
    const id = decodeURIComponent(raw)
    if (!isRepoId(id) || !policy.repositories.has(id)) throw new HttpError(404, 'unknown repository: not in this node\'s policy')
    return id
  }

  function requireAdmin (req: IncomingMessage): void {
    if (config.adminToken === undefined) throw new HttpError(403, 'admin endpoints are disabled: set "adminToken" in the node config')
    if (!tokenMatches(req.headers.authorization, config.adminToken)) throw new HttpError(401, 'admin endpoints need "Authorization: Bearer <adminToken>"')
  }

  const sockets = new Set<import('node:net').Socket>()
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x')
    const method = req.method ?? 'GET'
    void (async () => {
      try {
        if (method === 'GET' || method === 'HEAD') {
          const asset = webAsset(url.pathname)
          if (asset !== undefined) {
            res.writeHead(200, { 'content-type': asset.contentType, 'content-length': asset.body.byteLength, 'cache-control': 'no-cache', ...WEB_SECURITY_HEADERS })
            res.end(method === 'HEAD' ? undefined : asset.body)
            return
          }
        }
        const pathMatches = routes.filter(([, re]) => re.test(url.pathname))
        if (pathMatches.length === 0) throw new HttpError(404, `no route ${url.pathname}`)
        const route = pathMatches.find(([m]) => m === method || (m === 'GET' && method === 'HEAD'))
        if (route === undefined) throw new HttpError(405, `${method} is not allowed on ${url.pathname}`)
        await route[2](url.pathname.match(route[1])!, req, res)
      } catch (err) {
        const status = err instanceof HttpError ? err.status : 500
        if (status === 500) logger.error('http error', { path: url.pathname, error: (err as Error).message })
        if (!res.headersSent) sendJson(res, status, { error: err instanceof HttpError ? err.message : 'internal error' })
        else res.end()
      }
    })()
  })
  server.on('connection', s => { sockets.add(s); s.on('close', () => sockets.delete(s)) })
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(Object.assign(new Error(`${config.file}: http: cannot listen on ${config.http.host}:${config.http.port} (${err.code ?? err.message}); pick another port`), { code: 'CONFIG_INVALID' })))
    server.listen(config.http.port, config.http.host, () => resolve())
  })
  const addr = server.address() as import('node:net').AddressInfo
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address
  return {
    url: `http://${host}:${addr.port}`,
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>(resolve => server.close(() => resolve()))
    }
  }
}

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { timingSafeEqual, createHash } from 'node:crypto'
import { isCommitSha, isRepoId, isSha256Hex, type Decision } from '@quorate/core'
import { webAsset, WEB_SECURITY_HEADERS } from '@quorate/web'
import type { QuorateNode } from './node.js'
import type { Logger } from './logger.js'

export interface HttpApi { url: string, close: () => Promise<void> }

/** One cell of the builder × commit matrix: what each builder said about the commit. */
export interface BuilderCell { builder: string, org: string, result: 'agrees' | 'dissents' | 'voted' | 'failed' | 'equivocated', narSha256?: string }

function builderCells (d: Decision): BuilderCell[] {
  const cells = new Map<string, BuilderCell>()
  for (const f of d.failures) cells.set(f.builder, { builder: f.builder, org: f.org, result: 'failed' })
  for (const v of d.dissenters) cells.set(v.builder, { builder: v.builder, org: v.org, result: d.status === 'trusted' ? 'dissents' : 'voted', narSha256: v.narSha256 })
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
        stats: { ...node.stats, network: node.network.stats() },
        repositories: [...policy.repositories.keys()]
      })
    }],
    ['GET', /^\/v1\/policy$/, async (_m, _r, res) => { sendJson(res, 200, { digest: policy.digest, policy: policy.document }) }],
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
      sendJson(res, 200, { repoId, commit, policyDigest: policy.digest, decision, envelopes, equivocationProofs: proofs })
    }],
    ['GET', /^\/v1\/blobs\/([^/]+)$/, async (m, _r, res) => {
      if (!isSha256Hex(m[1])) throw new HttpError(400, 'blob id must be a sha256 hex digest')
      const blob = await store.getBlob(m[1])
      if (blob === undefined) throw new HttpError(404, 'no such blob on this node')
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': blob.byteLength, 'x-content-type-options': 'nosniff' })
      res.end(blob)
    }],
    ['GET', /^\/v1\/events$/, async (_m, req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' })
      res.write(': quorate events\n\n')
      const unsubscribe = node.events.subscribe(e => { res.write(`event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`) })
      const ping = setInterval(() => res.write(': ping\n\n'), 15_000)
      req.on('close', () => { clearInterval(ping); unsubscribe() })
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

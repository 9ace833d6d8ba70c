import { createHash } from 'node:crypto'
import { QuorateError } from '@quorate/core'
import { routePath, type ParamsOf, type ResponseOf, type RouteName } from '@quorate/node/api'

/** How long one request to a node may take, in ms, unless a call says otherwise. */
export const DEFAULT_TIMEOUT_MS = 20_000

/**
 * A typed client of one node's HTTP API, built on the route table the server uses
 * (`@quorate/node/api`): every path parameter is encoded, every request has a timeout, a non-2xx
 * answer is an error carrying the node's own message, and JSON answers are checked for the
 * fields callers read before they are typed. Nodes are untrusted: what they say about
 * decisions is never the answer (callers verify envelopes themselves).
 */
export interface NodeClient {
  readonly url: string
  get: <N extends JsonRoute>(name: N, params: Record<ParamsOf<N>, string>, opts?: { query?: Record<string, string>, timeoutMs?: number }) => Promise<ResponseOf<N>>
  /**
   * Content-addressed bytes (a file list or an output file), checked against their sha256;
   * undefined when the node lacks them, sends other bytes, or more than `maxBytes`.
   */
  bytes: (name: 'blob' | 'file', sha256: string, opts?: { timeoutMs?: number, maxBytes?: number }) => Promise<Uint8Array | undefined>
  /** The raw response of a route (for streaming a large body); a connection failure is a NodeHttpError with status 0. */
  response: <N extends RouteName>(name: N, params: Record<ParamsOf<N>, string>, opts?: { query?: Record<string, string>, timeoutMs?: number, headers?: Record<string, string> }) => Promise<Response>
  /**
   * A build log by its signed digest; undefined when the node lacks it. A whole log is checked
   * against the digest (a mismatch is an error: the node lied); a log that outgrew the recipe's
   * maxLogBytes comes as head and tail (`complete: false`), which no digest can check.
   */
  log: (sha256: string, opts?: { timeoutMs?: number }) => Promise<FetchedLog | undefined>
  /**
   * An admin action (POST, sending the token given to nodeClient). A refusal is a NodeHttpError
   * with the node's message and, where the node gives one, its `code`.
   */
  post: <N extends AdminRoute>(name: N, params: Record<ParamsOf<N>, string>, opts?: { timeoutMs?: number }) => Promise<ResponseOf<N>>
}

type AdminRoute = 'adminRebuild' | 'adminPoll'

export interface FetchedLog {
  text: string
  complete: boolean
  /** The whole log's size as the build wrote it. */
  totalBytes: number
}

type JsonRoute = Exclude<RouteName, 'blob' | 'file' | 'buildLog' | 'events' | 'metrics' | 'webhook' | AdminRoute>

/** Fields each JSON answer must have before it is handed on as its type. */
const REQUIRED: Record<JsonRoute, Record<string, 'string' | 'array' | 'object' | 'number' | 'boolean'>> = {
  health: { peerId: 'string', peers: 'number' },
  status: { name: 'string', peerId: 'string', peers: 'array', queue: 'object', repositories: 'array', sandbox: 'string', policyDigest: 'string' },
  policy: { digest: 'string' },
  repos: { repositories: 'array' },
  commits: { commits: 'array' },
  commit: { envelopes: 'array', equivocationProofs: 'array' },
  latest: { commit: 'string', narSha256: 'string' },
  digest: { commits: 'array' },
  log: { envelopes: 'array' }
}

/** An HTTP failure of one node: its status (0 when it did not answer) and what it said. */
export class NodeHttpError extends QuorateError {
  constructor (readonly url: string, readonly status: number, message: string, readonly reason?: string) {
    super('HTTP_FAILED', message, { url, status, ...(reason !== undefined ? { reason } : {}) })
  }
}

const typeOf = (v: unknown): string => Array.isArray(v) ? 'array' : v === null ? 'null' : typeof v

/** A node's base URL as given (`--node`), without trailing slashes: the one normalization of node URLs. */
export function nodeBaseUrl (url: string): string {
  return url.replace(/\/+$/, '')
}

export function nodeClient (url: string, opts: { token?: string } = {}): NodeClient {
  const base = nodeBaseUrl(url)
  const headers: Record<string, string> = opts.token !== undefined ? { authorization: `Bearer ${opts.token}` } : {}

  async function request (path: string, timeoutMs: number, method: 'GET' | 'POST' = 'GET', extra: Record<string, string> = {}): Promise<Response> {
    let res: Response
    try {
      res = await fetch(`${base}${path}`, { method, signal: AbortSignal.timeout(timeoutMs), headers: { ...headers, ...extra } })
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause?.code
      const what = (err as Error).name === 'TimeoutError' ? `nothing within ${timeoutMs / 1000} s` : cause ?? (err as Error).message
      throw new NodeHttpError(base, 0, `${base}: no answer (${what}); is the node running, and is this its "http" address (http://host:port, without /v1)?`)
    }
    return res
  }

  return {
    url: base,
    async get (name, params, opts = {}) {
      const path = routePath(name, params, opts.query)
      const res = await request(path, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS)
      let body: unknown
      try { body = await res.json() } catch { body = undefined }
      if (!res.ok) {
        const detail = typeof (body as { error?: unknown })?.error === 'string' ? `: ${(body as { error: string }).error}` : ''
        throw new NodeHttpError(base, res.status, `${base}${path}: HTTP ${res.status}${detail}`)
      }
      if (body === null || typeof body !== 'object') throw new NodeHttpError(base, res.status, `${base}${path}: the answer is not a JSON object; is this a Quorate node?`)
      for (const [field, type] of Object.entries(REQUIRED[name])) {
        const got = typeOf((body as Record<string, unknown>)[field])
        if (got !== type) throw new NodeHttpError(base, res.status, `${base}${path}: answer field "${field}" is ${got}, expected ${type}; is this a Quorate node of the same release?`)
      }
      return body as ResponseOf<typeof name>
    },
    async bytes (name, sha256, opts = {}) {
      const res = await request(routePath(name, { sha256 }), opts.timeoutMs ?? DEFAULT_TIMEOUT_MS)
      if (res.status === 404) { await res.body?.cancel().catch(() => {}); return undefined }
      if (!res.ok) { await res.body?.cancel().catch(() => {}); throw new NodeHttpError(base, res.status, `${base}${routePath(name, { sha256 })}: HTTP ${res.status}`) }
      const bytes = await readCapped(res, opts.maxBytes ?? Number.MAX_SAFE_INTEGER)
      return bytes !== undefined && createHash('sha256').update(bytes).digest('hex') === sha256 ? bytes : undefined
    },
    async response (name, params, opts = {}) {
      return await request(routePath(name, params, opts.query), opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, 'GET', opts.headers)
    },
    async post (name, params, opts = {}) {
      const path = routePath(name, params)
      const res = await request(path, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, 'POST')
      let body: unknown
      try { body = await res.json() } catch { body = undefined }
      if (!res.ok) {
        const b = body as { error?: unknown, code?: unknown } | undefined
        const detail = typeof b?.error === 'string' ? `: ${b.error}` : ''
        throw new NodeHttpError(base, res.status, `${base}${path}: HTTP ${res.status}${detail}`, typeof b?.code === 'string' ? b.code : undefined)
      }
      if (body === null || typeof body !== 'object' || (body as { ok?: unknown }).ok !== true) throw new NodeHttpError(base, res.status, `${base}${path}: the answer is not the expected JSON; is this a Quorate node of the same release?`)
      return body as ResponseOf<typeof name>
    },
    async log (sha256, opts = {}) {
      const path = routePath('buildLog', { sha256 })
      const res = await request(path, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS)
      if (res.status === 404) return undefined
      if (!res.ok) {
        let detail = ''
        try { detail = `: ${(await res.json() as { error: string }).error}` } catch {}
        throw new NodeHttpError(base, res.status, `${base}${path}: HTTP ${res.status}${detail}`)
      }
      const bytes = Buffer.from(await res.arrayBuffer())
      const complete = res.headers.get('x-quorate-log-complete') !== 'false'
      const total = Number(res.headers.get('x-quorate-log-total-bytes'))
      if (complete && createHash('sha256').update(bytes).digest('hex') !== sha256) {
        throw new NodeHttpError(base, res.status, `${base}${path}: the log does not hash to the signed digest ${sha256}; this node serves a wrong log`)
      }
      return { text: bytes.toString('utf8'), complete, totalBytes: Number.isSafeInteger(total) && total >= 0 ? total : bytes.length }
    }
  }
}

/** Reads a body, giving up (undefined) once it exceeds `max` bytes. */
async function readCapped (res: Response, max: number): Promise<Uint8Array | undefined> {
  const reader = res.body?.getReader()
  if (reader === undefined) return new Uint8Array()
  const chunks: Uint8Array[] = []
  let n = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    n += value.byteLength
    if (n > max) { await reader.cancel().catch(() => {}); return undefined }
    chunks.push(value)
  }
  return Buffer.concat(chunks)
}

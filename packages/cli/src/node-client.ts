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
  /** Content-addressed bytes (a file list or an output file), checked against their sha256; undefined when the node lacks them. */
  bytes: (name: 'blob' | 'file', sha256: string, opts?: { timeoutMs?: number }) => Promise<Uint8Array | undefined>
}

type JsonRoute = Exclude<RouteName, 'blob' | 'file' | 'events' | 'metrics' | 'webhook' | 'adminPoll'>

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
  constructor (readonly url: string, readonly status: number, message: string) {
    super('HTTP_FAILED', message, { url, status })
  }
}

const typeOf = (v: unknown): string => Array.isArray(v) ? 'array' : v === null ? 'null' : typeof v

export function nodeClient (url: string): NodeClient {
  const base = url.replace(/\/+$/, '')

  async function request (path: string, timeoutMs: number): Promise<Response> {
    let res: Response
    try {
      res = await fetch(`${base}${path}`, { signal: AbortSignal.timeout(timeoutMs) })
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
      if (res.status === 404) return undefined
      if (!res.ok) throw new NodeHttpError(base, res.status, `${base}${routePath(name, { sha256 })}: HTTP ${res.status}`)
      const bytes = new Uint8Array(await res.arrayBuffer())
      return createHash('sha256').update(bytes).digest('hex') === sha256 ? bytes : undefined
    }
  }
}

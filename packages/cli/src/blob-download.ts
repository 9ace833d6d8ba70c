import { createHash } from 'node:crypto'
import { open, rename, rm } from 'node:fs/promises'
import { nodeClient } from './node-client.js'

/** Largest file list the CLI downloads by default: the list of several million files. */
export const DEFAULT_MAX_FILE_LIST_BYTES = 1024 * 1024 * 1024
/** A body that broke off is resumed (HTTP Range) this many times per node, while it makes progress. */
const RESUMES = 5

export type BlobDownload =
  | { ok: true, size: number, url: string }
  | { ok: false, rejected: Array<{ url: string, reason: string }> }

/**
 * Downloads the content-addressed blob `sha256` (a file list) from the first of `urls` that serves
 * it with the right content, streaming it into a temporary file next to `path`, hashing on the way,
 * and renaming it to `path` only when it hashes to `sha256`: a blob of any size up to `maxBytes`
 * passes through memory a chunk at a time. A node announcing or sending more than `maxBytes` is
 * cut off at once; a body that breaks off is resumed from where it stopped (Range). `timeoutMs`
 * bounds each request, not the whole download.
 */
export async function downloadBlob (urls: string[], sha256: string, path: string, opts: { timeoutMs?: number, maxBytes?: number, token?: string } = {}): Promise<BlobDownload> {
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_FILE_LIST_BYTES
  const rejected: Array<{ url: string, reason: string }> = []
  const tmp = `${path}.part`
  for (const url of urls) {
    const file = await open(tmp, 'w', 0o600)
    let closed = false
    try {
      const why = await downloadFrom(url, sha256, file, maxBytes, opts)
      await file.close()
      closed = true
      if (typeof why === 'string') { rejected.push({ url, reason: why }); continue }
      await rename(tmp, path)
      return { ok: true, size: why.size, url }
    } finally {
      if (!closed) await file.close().catch(() => {})
      await rm(tmp, { force: true })
    }
  }
  return { ok: false, rejected }
}

async function downloadFrom (url: string, sha256: string, file: import('node:fs/promises').FileHandle, maxBytes: number, opts: { timeoutMs?: number, token?: string }): Promise<{ size: number } | string> {
  const client = nodeClient(url, opts.token !== undefined ? { token: opts.token } : {})
  let hash = createHash('sha256')
  let pos = 0
  let resumes = 0
  for (;;) {
    let res: Response
    try {
      res = await client.response('blob', { sha256 }, { ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}), ...(pos > 0 ? { headers: { range: `bytes=${pos}-` } } : {}) })
    } catch (err) {
      return (err as Error).message
    }
    if (!res.ok) { await res.body?.cancel().catch(() => {}); return `HTTP ${res.status}` }
    if (pos > 0 && res.status === 200) {
      // The node ignored the range (an older release): start over.
      await file.truncate(0)
      hash = createHash('sha256')
      pos = 0
    } else if (pos > 0 && !new RegExp(`^bytes ${pos}-\\d+/\\d+$`).test(res.headers.get('content-range') ?? '')) {
      await res.body?.cancel().catch(() => {})
      return `answered the range from ${pos} with Content-Range ${JSON.stringify(res.headers.get('content-range'))}`
    }
    const announced = Number(res.headers.get('content-length'))
    if (Number.isSafeInteger(announced) && pos + announced > maxBytes) {
      await res.body?.cancel().catch(() => {})
      return `announces ${pos + announced} bytes, over the limit of ${maxBytes}`
    }
    const started = pos
    try {
      const reader = res.body!.getReader()
      for (;;) {
        const { done, value } = await reader.read()
        if (done) break
        if (pos + value.byteLength > maxBytes) {
          await reader.cancel().catch(() => {})
          return `sent more than the limit of ${maxBytes} bytes`
        }
        hash.update(value)
        let off = 0
        while (off < value.byteLength) {
          const { bytesWritten } = await file.write(value, off, value.byteLength - off, pos + off)
          off += bytesWritten
        }
        pos += value.byteLength
      }
    } catch (err) {
      if (pos > started && resumes < RESUMES) { resumes++; continue }
      return `the download broke off after ${pos} bytes (${(err as Error).message})`
    }
    break
  }
  if (hash.digest('hex') !== sha256) return `sent ${pos} bytes that do not hash to ${sha256}`
  return { size: pos }
}

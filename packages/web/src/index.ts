/**
 * @quorate/web: the auditor dashboard's static assets, served read-only by the node.
 *
 * @example
 * const asset = webAsset('/')   // { contentType: 'text/html; charset=utf-8', body: Buffer }
 */
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { join, normalize } from 'node:path'

const ASSETS = fileURLToPath(new URL('../assets/', import.meta.url))

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml'
}

export interface WebAsset { contentType: string, body: Buffer }

const cache = new Map<string, WebAsset>()

/** The asset for a request path ('/' and '/ui/...'), or undefined. Never leaves the assets folder. */
export function webAsset (pathname: string): WebAsset | undefined {
  const rel = pathname === '/' || pathname === '/ui' || pathname === '/ui/' ? 'index.html' : pathname.startsWith('/ui/') ? pathname.slice(4) : undefined
  if (rel === undefined || rel.includes('..') || rel.includes('\0')) return undefined
  const clean = normalize(rel)
  const ext = clean.slice(clean.lastIndexOf('.'))
  const type = TYPES[ext]
  if (type === undefined) return undefined
  let asset = cache.get(clean)
  if (asset === undefined) {
    try {
      asset = { contentType: type, body: readFileSync(join(ASSETS, clean)) }
    } catch {
      return undefined
    }
    cache.set(clean, asset)
  }
  return asset
}

/** Security headers for the dashboard: no inline script, no framing, nothing from elsewhere. */
export const WEB_SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY'
}

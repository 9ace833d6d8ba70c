import { QuorateError } from '@quorate/core'

/** Transports git may use (DESIGN.md "Builds"); everything else, remote helpers included, is refused. */
export const ALLOWED_GIT_SCHEMES = ['file', 'https', 'ssh', 'git'] as const

const ALLOWED_FORMS = 'file://, https://, ssh://, git://, scp-like user@host:path, or a local path'

/** `user@host:path` or `host:path` (git's scp-like syntax); the host may be an [IPv6] literal. */
const SCP_LIKE = /^(?:([^@/:\s]+)@)?([A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\]):(.*)$/s

/**
 * Throws GIT_URL_REJECTED unless `url` uses an allowed transport. The error names the URL
 * with its credentials redacted.
 */
export function checkGitUrl (url: string): void {
  const reject = (why: string): never => {
    throw new QuorateError('GIT_URL_REJECTED',
      `repository URL ${redactUrl(url)} is not allowed: ${why}; use ${ALLOWED_FORMS}`,
      { url: redactUrl(url), allowed: ALLOWED_FORMS })
  }
  if (url.length === 0) reject('it is empty')
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(url)) reject('it contains control characters')
  if (url.startsWith('-')) reject('it starts with "-", which git would read as an option')
  // `<transport>::<address>` runs a remote helper (ext:: runs arbitrary commands, fd:: reads descriptors).
  if (url.includes('::')) reject('"transport::address" remote helpers are never used')
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(url)
  if (scheme !== null) {
    const name = scheme[1]
    if (name === 'http') reject('plain http:// has no transport security (use https://)')
    if (!(ALLOWED_GIT_SCHEMES as readonly string[]).includes(name)) reject(`the scheme "${name}" is not in the allowlist`)
    if (name !== 'file') {
      let parsed: URL
      try {
        parsed = new URL(url)
      } catch {
        return reject('it is not a valid URL')
      }
      if (parsed.hostname.startsWith('-')) reject('its host starts with "-"')
    }
    return
  }
  const colon = url.indexOf(':')
  const slash = url.indexOf('/')
  if (colon >= 0 && (slash < 0 || colon < slash)) {
    // git reads a colon before the first slash as scp-like ssh syntax.
    const m = SCP_LIKE.exec(url)
    if (m === null) reject('it looks like an scp-like address but is not user@host:path')
    if (m?.[2].startsWith('-') === true || m?.[3].startsWith('-') === true) reject('its host or path starts with "-"')
    return
  }
  // Anything else is a local path, absolute or relative.
}

/** The URL with any userinfo (user:password, tokens) replaced by `***`, for errors and logs. */
export function redactUrl (url: string): string {
  return url.replace(/^([A-Za-z][A-Za-z0-9+.-]*:\/\/)[^@/?#]*@/, '$1***@')
}

/** Removes the URL's credentials and any given secrets from text that git printed. */
export function redactText (text: string, url: string, secrets: readonly string[]): string {
  let out = text.split(url).join(redactUrl(url))
  for (const s of secrets) if (s.length > 0) out = out.split(s).join('***')
  return out.replace(/([A-Za-z][A-Za-z0-9+.-]*:\/\/)[^@/\s]*:[^@/\s]*@/g, '$1***@')
}

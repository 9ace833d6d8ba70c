/**
 * The one rule for repository URLs (DESIGN.md "Builds"): which git transports are allowed.
 * The policy parser checks it when a policy is loaded (so `quorate policy check` refuses what
 * a node would refuse), and the builder checks it again before git ever sees the URL.
 * Pure: the WHATWG URL parser only.
 */
import { escapeForDisplay } from './display-escape.js'
import { QuorateError } from './errors.js'

/** Transports git may use; everything else, remote helpers included, is refused. */
export const ALLOWED_GIT_SCHEMES = ['file', 'https', 'ssh', 'git'] as const

export const ALLOWED_GIT_URL_FORMS = 'file://, https://, ssh://, git://, scp-like user@host:path, or a local path'

/** `user@host:path` or `host:path` (git's scp-like syntax); the host may be an [IPv6] literal. */
const SCP_LIKE = /^(?:([^@/:\s]+)@)?([A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\]):(.*)$/s

/** Why git must not be given `url` (ext:: helpers, option injection, plain http …), or undefined when it is allowed. */
export function gitUrlProblem (url: string): string | undefined {
  if (url.length === 0) return 'it is empty'
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(url)) return 'it contains control characters'
  if (url.startsWith('-')) return 'it starts with "-", which git would read as an option'
  // `<transport>::<address>` runs a remote helper (ext:: runs arbitrary commands, fd:: reads descriptors).
  if (url.includes('::')) return '"transport::address" remote helpers are never used'
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(url)
  if (scheme !== null) {
    const name = scheme[1]
    if (name === 'http') return 'plain http:// has no transport security (use https://)'
    if (!(ALLOWED_GIT_SCHEMES as readonly string[]).includes(name)) return `the scheme "${name}" is not in the allowlist`
    if (name !== 'file') {
      let parsed: URL
      try {
        parsed = new URL(url)
      } catch {
        return 'it is not a valid URL'
      }
      if (parsed.hostname.startsWith('-')) return 'its host starts with "-"'
      let user: string
      try {
        user = decodeURIComponent(parsed.username)
      } catch {
        // found by fuzzing: "https://%zz@host/x.git" threw a URIError out of the policy parser
        return 'its user name has malformed percent-encoding'
      }
      if (user.startsWith('-')) return 'its user name starts with "-"'
    }
    return undefined
  }
  const colon = url.indexOf(':')
  const slash = url.indexOf('/')
  if (colon >= 0 && (slash < 0 || colon < slash)) {
    // git reads a colon before the first slash as scp-like ssh syntax.
    const m = SCP_LIKE.exec(url)
    if (m === null) return 'it looks like an scp-like address but is not user@host:path'
    if (m[1]?.startsWith('-') === true || m[2].startsWith('-') || m[3].startsWith('-')) return 'its user, host or path starts with "-"'
    return undefined
  }
  // Anything else is a local path, absolute or relative.
  return undefined
}

/**
 * Throws GIT_URL_REJECTED unless `url` uses an allowed transport. The error names the URL
 * with its credentials redacted.
 */
export function checkGitUrl (url: string): void {
  const why = gitUrlProblem(url)
  if (why === undefined) return
  throw new QuorateError('GIT_URL_REJECTED',
    `repository URL ${escapeForDisplay(redactUrl(url))} is not allowed: ${why}; use ${ALLOWED_GIT_URL_FORMS}`,
    { url: redactUrl(url), allowed: ALLOWED_GIT_URL_FORMS })
}

/** The URL with any userinfo (user:password, tokens) replaced by `***`, for errors and logs. */
export function redactUrl (url: string): string {
  return url.replace(/^([A-Za-z][A-Za-z0-9+.-]*:\/\/)[^@/?#]*@/, '$1***@')
}

/**
 * The SLSA `resolvedDependencies[].uri` (and VSA `resourceUri`) of a repository at a revision:
 * `git+<absolute URL, credentials, query and fragment removed>@<ref or commit>` (SPDX/SLSA
 * convention, e.g. `git+https://git.example/hello.git@refs/heads/main`). scp-like
 * `user@host:path` becomes `ssh://host/path`, an absolute local path `file:///path`.
 */
export function gitDependencyUri (url: string, revision: string): string {
  let base: string
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(url)
  const scp = scheme === null ? SCP_LIKE.exec(url) : null
  if (scheme !== null) {
    try {
      const u = new URL(url)
      u.username = ''
      u.password = ''
      u.search = ''
      u.hash = ''
      base = u.href
    } catch {
      base = redactUrl(url).replace(/[?#].*$/s, '')
    }
  } else if (scp !== null && !url.startsWith('/') && (url.indexOf('/') < 0 || url.indexOf(':') < url.indexOf('/'))) {
    base = `ssh://${scp[2]}/${scp[3].replace(/^\/+/, '')}`
  } else if (url.startsWith('/')) {
    base = `file://${encodeURI(url)}`
  } else {
    // A relative local path has no absolute URI: say what it was, relative to the node.
    base = `file:${encodeURI(url)}`
  }
  return `git+${base}@${revision}`
}

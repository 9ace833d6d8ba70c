import { access, mkdir, readdir } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { QuorateError } from '@quorate/core'
import { runCollect, type CollectResult } from './child-process.js'
import { CatFileBatch } from './cat-file-batch.js'
import { checkGitUrl, redactText, redactUrl } from './git-url.js'

export interface GitCredentials {
  /**
   * Sent as `Authorization: Bearer <token>` (or Basic `username:token` when `username` is set)
   * to the repository's https origin only. Passed to git through its environment, never written
   * to the mirror's config.
   */
  token?: string
  /** With `token`, use HTTP Basic auth with this user name (e.g. "x-access-token" on GitHub). */
  username?: string
  /** Private key for ssh:// and scp-like URLs (`ssh -i KEY -o IdentitiesOnly=yes -o BatchMode=yes`). */
  sshKeyFile?: string
}

export interface GitMirrorInit {
  /** The repository's URL from the policy; see checkGitUrl for what is allowed. */
  url: string
  /** Path of this node's bare mirror of the repository. */
  dir: string
  credentials?: GitCredentials
  /** Wall-clock limit for one network fetch (default 10 minutes). */
  fetchTimeoutMs?: number
}

export interface RefPatterns {
  /** Branch name globs: `*` within one path segment, `**` across segments, `?` one character. */
  branches: string[]
  tags?: string[]
}

/** What a first clone has done so far (git's own progress line, e.g. "Receiving objects:  45% (450/1000), 1.2 MiB"). */
export interface CloneProgress {
  url: string
  elapsedMs: number
  line: string
}

export interface FetchOptions {
  /** For a first clone (no mirror yet): called every progressIntervalMs with git's latest progress line. */
  onCloneProgress?: (progress: CloneProgress) => void
  /** Default 15 s. */
  progressIntervalMs?: number
}

/** What git says about a commit (the author's own words and clock: never signed by a builder). */
export interface CommitSummary {
  subject: string
  author: string
  /** The author date, ISO 8601 with the author's UTC offset. */
  date: string
}

/** Watched branch patterns that match no branch of the remote, and the branches it has. */
export interface MissingBranches {
  missing: string[]
  branches: string[]
}

const COMMIT_HEX = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/
const LOCAL_TIMEOUT_MS = 5 * 60 * 1000

/**
 * Options on every git invocation: objects are checked on transfer, only the allowed transports
 * run, no hooks, no credential helpers, no fsmonitor, no submodules, and auto-gc stays in the
 * foreground (a detached gc would outlive the call).
 */
const SAFE_CONFIG = [
  '-c', 'transfer.fsckObjects=true',
  '-c', 'protocol.allow=never',
  '-c', 'protocol.file.allow=always',
  '-c', 'protocol.https.allow=always',
  '-c', 'protocol.ssh.allow=always',
  '-c', 'protocol.git.allow=always',
  '-c', 'core.hooksPath=/dev/null',
  '-c', 'core.fsmonitor=false',
  '-c', 'credential.helper=',
  '-c', 'submodule.recurse=false',
  '-c', 'gc.autoDetach=false',
  '-c', 'advice.detachedHead=false'
]

/**
 * A node's bare mirror of one repository: fetches branches and tags, resolves watched refs,
 * lists new commits, and makes fresh working trees for builds.
 *
 * One instance per mirror directory; its fetches run one at a time.
 */
export class GitMirror {
  readonly dir: string
  /** The URL with credentials redacted: safe for logs and errors. */
  readonly displayUrl: string
  private readonly url: string
  private readonly credentials: GitCredentials
  private readonly fetchTimeoutMs: number
  private fetching: Promise<void> = Promise.resolve()
  /** Reads commit objects for commitSummaries (one git process kept, not one per call). */
  private batch: CatFileBatch | undefined

  constructor (init: GitMirrorInit) {
    checkGitUrl(init.url)
    this.url = init.url
    this.displayUrl = redactUrl(init.url)
    this.dir = init.dir
    this.credentials = init.credentials ?? {}
    this.fetchTimeoutMs = init.fetchTimeoutMs ?? 10 * 60 * 1000
  }

  /** Creates the bare mirror if needed, then fetches all branches and tags, pruning deleted ones. */
  async fetch (options: FetchOptions = {}): Promise<void> {
    const run = this.fetching.then(async () => await this.fetchNow(options))
    this.fetching = run.catch(() => {})
    try {
      await run
    } finally {
      // the next commitSummaries reads the fetched mirror from a new git process
      this.batch?.close()
    }
  }

  /** Ends the git process commitSummaries keeps (it ends by itself after 30 s without reads). */
  close (): void {
    this.batch?.close()
  }

  private async fetchNow (options: FetchOptions): Promise<void> {
    const first = !await exists(join(this.dir, 'HEAD'))
    if (first) {
      await mkdir(dirname(this.dir), { recursive: true })
      await this.git(['init', '--quiet', '--bare', '--template=', this.dir], { what: `create the mirror at ${this.dir}` })
    }
    const report = first ? options.onCloneProgress : undefined
    let line = 'connecting'
    const started = performance.now()
    const timer = report === undefined
      ? undefined
      : setInterval(() => report({ url: this.displayUrl, elapsedMs: Math.round(performance.now() - started), line }), options.progressIntervalMs ?? 15_000)
    timer?.unref()
    let result: CollectResult
    try {
      result = await this.rawGit([
        '-C', this.dir, 'fetch', report !== undefined ? '--progress' : '--quiet', '--prune', '--no-tags', '--no-recurse-submodules', '--no-write-fetch-head',
        '--', this.url, '+refs/heads/*:refs/heads/*', '+refs/tags/*:refs/tags/*'
      ], {
        timeoutMs: this.fetchTimeoutMs,
        network: true,
        onStderr: report === undefined
          ? undefined
          : chunk => {
            const lines = chunk.toString('utf8').split(/[\r\n]/).map(l => l.trim()).filter(l => l.length > 0)
            if (lines.length > 0) line = this.redact(lines[lines.length - 1]).slice(0, 200)
          }
      })
    } finally {
      if (timer !== undefined) clearInterval(timer)
    }
    if (result.timedOut || result.code !== 0) {
      const why = result.timedOut ? `no answer within ${Math.round(this.fetchTimeoutMs / 1000)} s` : this.firstErrorLine(result.stderr)
      throw new QuorateError('GIT_FAILED',
        `could not fetch ${this.displayUrl}: ${why}; check the repository URL in the policy and the node's credentials`,
        { url: this.displayUrl, exitStatus: result.code, stderr: this.redact(result.stderr) })
    }
  }

  /**
   * Subject line, author name and author date of each commit the mirror has (read by one git
   * process kept between calls and restarted after each fetch); commits it lacks are left out.
   */
  async commitSummaries (commits: string[]): Promise<Map<string, CommitSummary>> {
    const out = new Map<string, CommitSummary>()
    const wanted = [...new Set(commits)].filter(c => COMMIT_HEX.test(c))
    if (wanted.length === 0 || (this.batch === undefined && !await exists(join(this.dir, 'HEAD')))) return out
    this.batch ??= new CatFileBatch(['git', ...SAFE_CONFIG, '-C', this.dir, 'cat-file', '--batch'], () => this.environment(false), { timeoutMs: LOCAL_TIMEOUT_MS })
    const objects = await this.batch.read(wanted)
    for (const [i, sha] of wanted.entries()) {
      const o = objects[i]
      if (o?.type !== 'commit' || o.body === undefined) continue
      const body = o.body.toString('utf8')
      const end = body.indexOf('\n\n')
      const headers = (end < 0 ? body : body.slice(0, end)).split('\n')
      const message = end < 0 ? '' : body.slice(end + 2)
      const author = headers.find(h => h.startsWith('author '))
      const m = author === undefined ? null : /^author (.*) <[^>]*> (\d+) ([+-])(\d{2})(\d{2})$/.exec(author)
      const subject = message.split('\n\n')[0].replace(/\s*\n\s*/g, ' ').trim()
      out.set(sha, { subject: subject.slice(0, 1000), author: m?.[1] ?? '', date: m === null ? '' : authorDate(Number(m[2]), m[3], Number(m[4]), Number(m[5])) })
    }
    return out
  }

  /** The branch names the remote had at the last fetch (the mirror keeps exactly those). */
  async branches (): Promise<string[]> {
    await this.requireMirror()
    const listed = await this.git(['-C', this.dir, 'for-each-ref', '--format=%(refname:lstrip=2)', 'refs/heads'], { what: 'list branches' })
    return listed.split('\n').filter(b => b.length > 0)
  }

  /** Which of the watched branch patterns match no branch of the remote (as of the last fetch). */
  async missingBranches (patterns: string[]): Promise<MissingBranches> {
    const branches = await this.branches()
    const missing = patterns.filter(p => {
      const re = globToRegExp(stripPrefix(p, 'refs/heads/'))
      return !branches.some(b => re.test(b))
    })
    return { missing, branches }
  }

  /** Full ref name → commit for every branch and tag matching the patterns; annotated tags are peeled. */
  async resolveRefs (patterns: RefPatterns): Promise<Map<string, string>> {
    return (await this.resolveWatchedRefs(patterns)).refs
  }

  /**
   * What a poll needs from one listing of the mirror's refs: `resolveRefs`'s map, and which
   * watched branch patterns match no branch (with the branches there are), as `missingBranches`.
   */
  async resolveWatchedRefs (patterns: RefPatterns): Promise<{ refs: Map<string, string>, missing: MissingBranches }> {
    await this.requireMirror()
    const branchRes = patterns.branches.map(p => globToRegExp(stripPrefix(p, 'refs/heads/')))
    const tagRes = (patterns.tags ?? []).map(p => globToRegExp(stripPrefix(p, 'refs/tags/')))
    const listed = await this.git(['-C', this.dir, 'for-each-ref', '--format=%(refname)', 'refs/heads', 'refs/tags'], { what: 'list refs' })
    const branches = listed.split('\n').filter(ref => ref.startsWith('refs/heads/')).map(ref => ref.slice('refs/heads/'.length))
    const missing = { missing: patterns.branches.filter((_p, i) => !branches.some(b => branchRes[i].test(b))), branches }
    const wanted = listed.split('\n').filter(ref => {
      if (ref.startsWith('refs/heads/')) return branchRes.some(re => re.test(ref.slice('refs/heads/'.length)))
      if (ref.startsWith('refs/tags/')) return tagRes.some(re => re.test(ref.slice('refs/tags/'.length)))
      return false
    })
    const result = new Map<string, string>()
    if (wanted.length === 0) return { refs: result, missing }
    // One process peels everything; a tag of a tree or blob prints "missing" and is skipped.
    const peeled = await this.git(['-C', this.dir, 'cat-file', '--batch-check=%(objectname) %(objecttype)'],
      { what: 'resolve refs', input: wanted.map(ref => `${ref}^{commit}\n`).join('') })
    const lines = peeled.split('\n')
    wanted.forEach((ref, i) => {
      const [sha, type] = (lines[i] ?? '').split(' ')
      if (type === 'commit' && COMMIT_HEX.test(sha)) result.set(ref, sha)
    })
    return { refs: result, missing }
  }

  /**
   * Commits reachable from `newHead` and not from `oldHead`, oldest first, at most the newest
   * `limit`. Without `oldHead` (or when the mirror no longer has it, after a force push and gc),
   * the last `limit` commits of newHead's first-parent history.
   */
  async commitsSince (newHead: string, oldHead: string | null, limit: number): Promise<string[]> {
    checkCommit(newHead)
    if (oldHead !== null) checkCommit(oldHead)
    if (!Number.isSafeInteger(limit) || limit <= 0) {
      throw new QuorateError('USAGE', `commitsSince: limit must be a positive whole number, got ${limit}`, { limit })
    }
    await this.requireMirror()
    const args = ['-C', this.dir, 'rev-list', '--reverse', '--topo-order', `--max-count=${limit}`]
    if (oldHead !== null && await this.hasCommit(oldHead)) args.push(newHead, `^${oldHead}`)
    else args.push('--first-parent', newHead)
    const out = await this.git([...args, '--'], { what: `list commits up to ${newHead}` })
    return out.split('\n').filter(line => line.length > 0)
  }

  /**
   * What a ref move from `previous` to `commit` brought (a ref observation's fields, DESIGN.md
   * "The attestation"): the commits reachable from `commit` but not from `previous`, newest first
   * in topological order (a child before its parents), at most `max` (then `truncated`), and
   * whether `previous` is an ancestor of `commit`. A move back to an ancestor introduces nothing.
   * When the mirror no longer has `previous` (a force push, then gc), it lists `commit`'s
   * history, marked truncated, and the move is not a fast-forward.
   */
  async refMove (commit: string, previous: string | null, max = 256): Promise<{ introduced: string[], truncated: boolean, fastForward: boolean }> {
    checkCommit(commit)
    if (previous !== null) checkCommit(previous)
    await this.requireMirror()
    const known = previous !== null && await this.hasCommit(previous)
    const args = ['-C', this.dir, 'rev-list', '--topo-order', `--max-count=${max + 1}`, commit]
    if (known) args.push(`^${previous}`)
    const out = (await this.git([...args, '--'], { what: `list the commits from ${previous ?? '(none)'} to ${commit}` })).split('\n').filter(l => l.length > 0)
    let fastForward = false
    if (known) {
      const r = await this.rawGit(['-C', this.dir, 'merge-base', '--is-ancestor', previous, commit], { timeoutMs: LOCAL_TIMEOUT_MS })
      fastForward = r.code === 0
    }
    return { introduced: out.slice(0, max), truncated: out.length > max || (previous !== null && !known), fastForward }
  }

  /** Committer time of a commit in unix seconds (the build's SOURCE_DATE_EPOCH). */
  async commitTime (commit: string): Promise<number> {
    checkCommit(commit)
    await this.requireMirror()
    const out = await this.git(['-C', this.dir, 'log', '-1', '--no-walk', '--format=%ct', commit, '--'], { what: `read the time of commit ${commit}` })
    const t = Number(out.trim())
    if (!Number.isSafeInteger(t)) throw new QuorateError('GIT_FAILED', `commit ${commit} in ${this.dir} has no readable committer time`, { commit })
    return t
  }

  /** Whether the mirror has this commit. */
  async hasCommit (commit: string): Promise<boolean> {
    checkCommit(commit)
    const r = await this.rawGit(['-C', this.dir, 'cat-file', '-e', `${commit}^{commit}`], { timeoutMs: LOCAL_TIMEOUT_MS })
    return r.code === 0
  }

  /**
   * The bytes of the regular file `path` (relative to the repository root, `/`-separated) at
   * `commit`, read from the mirror's object store without a checkout; undefined when the
   * commit has no such path (also when a directory on the way is a symlink or a submodule).
   * Nothing is followed: a symlink, a directory or a submodule at `path`, or a file larger than
   * `maxBytes`, throws GIT_FAILED with `fields.problem` 'not-a-regular-file' or 'too-large'
   * (problems of the repository's content: fetching again does not help).
   */
  async readFile (commit: string, path: string, maxBytes = 65536): Promise<Uint8Array | undefined> {
    checkCommit(commit)
    checkRepoPath(path)
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) {
      throw new QuorateError('USAGE', `readFile: maxBytes must be a whole number ≥ 0, got ${maxBytes}`, { maxBytes })
    }
    await this.requireMirror()
    // Literal pathspecs: `*` or `:(glob)` in a name mean themselves.
    const listed = await this.rawGit(['--literal-pathspecs', '-C', this.dir, 'ls-tree', '-z', '-l', '--full-tree', `${commit}^{commit}`, '--', path], { timeoutMs: LOCAL_TIMEOUT_MS })
    if (listed.code !== 0 || listed.timedOut) {
      if (!listed.timedOut && !await this.hasCommit(commit)) {
        throw new QuorateError('GIT_FAILED',
          `commit ${commit} is not in the mirror of ${this.displayUrl}; fetch first, or check that the commit belongs to this repository`,
          { commit, url: this.displayUrl })
      }
      throw new QuorateError('GIT_FAILED',
        `git could not list ${path} at ${commit}: ${listed.timedOut ? 'it timed out' : this.firstErrorLine(listed.stderr)}; check the mirror at ${this.dir}`,
        { dir: this.dir, commit, path, exitStatus: listed.code, stderr: this.redact(listed.stderr) })
    }
    // "<mode> SP <type> SP <object> SP+ <size> TAB <path>" NUL; only the exact path counts.
    const entry = listed.stdout.split('\0').map(line => /^(\d+) (\w+) ([0-9a-f]+) +(\d+|-)\t([\s\S]*)$/.exec(line))
      .find(m => m !== null && m[5] === path)
    if (entry === undefined || entry === null) return undefined
    const [, mode, type, object, sizeText] = entry
    if (type !== 'blob' || (mode !== '100644' && mode !== '100755')) {
      const what = mode === '120000' ? 'a symlink' : mode === '160000' ? 'a submodule' : type === 'tree' ? 'a directory' : `an entry of mode ${mode}`
      throw new QuorateError('GIT_FAILED',
        `${path} at commit ${commit} is ${what}, not a regular file; it is not followed. Commit the file itself at that path`,
        { problem: 'not-a-regular-file', commit, path, mode })
    }
    const size = Number(sizeText)
    if (size > maxBytes) {
      throw new QuorateError('GIT_FAILED',
        `${path} at commit ${commit} is ${size} bytes, more than the ${maxBytes} bytes allowed; make it smaller`,
        { problem: 'too-large', commit, path, size, maxBytes })
    }
    const blob = await this.rawGit(['-C', this.dir, 'cat-file', 'blob', object], { timeoutMs: LOCAL_TIMEOUT_MS, maxOutputBytes: maxBytes + 1 })
    if (blob.code !== 0 || blob.timedOut || blob.stdoutBytes.length !== size) {
      throw new QuorateError('GIT_FAILED',
        `git could not read ${path} at ${commit}: ${blob.timedOut ? 'it timed out' : this.firstErrorLine(blob.stderr)}; check the mirror at ${this.dir}`,
        { dir: this.dir, commit, path, exitStatus: blob.code })
    }
    return new Uint8Array(blob.stdoutBytes.buffer, blob.stdoutBytes.byteOffset, blob.stdoutBytes.length)
  }

  /**
   * A fresh working tree of exactly `commit` at `dest`, with its own `.git` (builds read it).
   * Objects are copied, not hard-linked, so nothing the build does reaches the mirror. The
   * clone's remote and local branches are removed, so every node's checkout has the same refs
   * apart from tags.
   */
  async checkout (commit: string, dest: string): Promise<void> {
    checkCommit(commit)
    await this.requireMirror()
    if (await exists(dest) && (await readdir(dest)).length > 0) {
      throw new QuorateError('GIT_FAILED', `cannot check out into ${dest}: it is not empty; give a new or empty directory`, { dest })
    }
    // umask 022 whatever the node's own: file modes in the checkout (which a build may copy
    // or tar) must not differ between nodes.
    await this.git(['clone', '--quiet', '--no-checkout', '--no-hardlinks', '--template=', '--', this.dir, dest], { what: `clone the mirror into ${dest}`, umask022: true })
    try {
      await this.git(['-C', dest, 'checkout', '--quiet', '--detach', commit, '--'], { what: `check out ${commit}`, umask022: true })
    } catch (err) {
      if (await this.hasCommit(commit)) throw err
      throw new QuorateError('GIT_FAILED',
        `commit ${commit} is not in the mirror of ${this.displayUrl}; fetch first, or check that the commit belongs to this repository`,
        { commit, url: this.displayUrl })
    }
    await this.git(['-C', dest, 'remote', 'remove', 'origin'], { what: 'drop the clone\'s remote' })
    const branches = await this.git(['-C', dest, 'for-each-ref', '--format=%(refname)', 'refs/heads'], { what: 'list the clone\'s branches' })
    for (const ref of branches.split('\n').filter(r => r.length > 0)) {
      await this.git(['-C', dest, 'update-ref', '-d', ref], { what: `delete ${ref} in the checkout` })
    }
  }

  private async requireMirror (): Promise<void> {
    if (!await exists(join(this.dir, 'HEAD'))) {
      throw new QuorateError('GIT_FAILED', `there is no mirror of ${this.displayUrl} at ${this.dir} yet; call fetch() first`, { dir: this.dir })
    }
  }

  /** Runs a local git command; a non-zero exit throws GIT_FAILED naming what was being done. */
  private async git (args: string[], options: { what: string, input?: string, umask022?: boolean }): Promise<string> {
    const r = await this.rawGit(args, { timeoutMs: LOCAL_TIMEOUT_MS, input: options.input, umask022: options.umask022 })
    if (r.code !== 0 || r.timedOut) {
      throw new QuorateError('GIT_FAILED',
        `git could not ${options.what}: ${r.timedOut ? 'it timed out' : this.firstErrorLine(r.stderr)}; check the mirror at ${this.dir} (deleting it makes the next fetch start over)`,
        { dir: this.dir, exitStatus: r.code, stderr: this.redact(r.stderr) })
    }
    return r.stdout.replace(/\n$/, '')
  }

  private async rawGit (args: string[], options: { timeoutMs: number, input?: string, network?: boolean, maxOutputBytes?: number, umask022?: boolean, onStderr?: (chunk: Buffer) => void }): Promise<CollectResult> {
    // A umask is per process: set it in a shell that then becomes git (no shell parses args).
    const prefix = options.umask022 === true ? ['/bin/sh', '-c', 'umask 022 && exec "$@"', 'sh'] : []
    try {
      const r = await runCollect([...prefix, 'git', ...SAFE_CONFIG, ...args], {
        env: this.environment(options.network === true),
        timeoutMs: options.timeoutMs,
        input: options.input,
        maxOutputBytes: options.maxOutputBytes,
        onStderr: options.onStderr
      })
      if (prefix.length > 0 && r.code === 127) throw Object.assign(new Error(r.stderr), { code: 'ENOENT' })
      return r
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new QuorateError('GIT_FAILED', 'git is not installed or not on PATH; install it (apt-get install git)', {}, { cause: err })
      }
      throw err
    }
  }

  /** A scrubbed environment: nothing of the node's own environment reaches git but PATH and HOME. */
  private environment (network: boolean): Record<string, string> {
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
      // ssh reads known_hosts under HOME; git's global config is /dev/null regardless.
      HOME: process.env.HOME ?? '/nonexistent',
      LC_ALL: 'C',
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_CONFIG_GLOBAL: '/dev/null',
      GIT_TERMINAL_PROMPT: '0',
      GIT_LFS_SKIP_SMUDGE: '1',
      GIT_ALLOW_PROTOCOL: 'file:https:ssh:git',
      GIT_SSH_COMMAND: 'ssh -o BatchMode=yes'
    }
    if (!network) return env
    const { token, username, sshKeyFile } = this.credentials
    if (sshKeyFile !== undefined) {
      env.GIT_SSH_COMMAND = `ssh -i ${shellQuote(sshKeyFile)} -o IdentitiesOnly=yes -o BatchMode=yes`
    }
    const origin = httpsOrigin(this.url)
    if (token !== undefined && origin !== null) {
      // Through GIT_CONFIG_* rather than `-c`: the environment is not world-readable in /proc.
      const value = username !== undefined
        ? `Basic ${Buffer.from(`${username}:${token}`).toString('base64')}`
        : `Bearer ${token}`
      env.GIT_CONFIG_COUNT = '1'
      env.GIT_CONFIG_KEY_0 = `http.${origin}.extraHeader`
      env.GIT_CONFIG_VALUE_0 = `Authorization: ${value}`
    }
    return env
  }

  private redact (text: string): string {
    const { token, username } = this.credentials
    const secrets = token === undefined ? [] : [token, Buffer.from(`${username ?? ''}:${token}`).toString('base64')]
    return redactText(text, this.url, secrets)
  }

  private firstErrorLine (stderr: string): string {
    const lines = this.redact(stderr).split('\n').map(l => l.trim()).filter(l => l.length > 0)
    const line = lines.find(l => /^(fatal|error):/.test(l)) ?? lines[0] ?? 'git gave no message'
    return line.replace(/^(fatal|error):\s*/, '')
  }
}

/**
 * A ref-name glob as a RegExp: `*` matches within one path segment, `**` across segments
 * (`**` followed by `/` also matches no segment at all), `?` one character other than `/`.
 */
export function globToRegExp (pattern: string): RegExp {
  let re = ''
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]
    if (c === '*' && pattern[i + 1] === '*') {
      i++
      if (pattern[i + 1] === '/') {
        i++
        re += '(?:.*/)?'
      } else {
        re += '.*'
      }
    } else if (c === '*') {
      re += '[^/]*'
    } else if (c === '?') {
      re += '[^/]'
    } else {
      re += c.replace(/[\\^$.+()[\]{}|]/g, '\\$&')
    }
  }
  return new RegExp(`^${re}$`, 's')
}

/** A git timestamp with its UTC offset as ISO 8601 in that offset ("2026-01-01T09:00:00+02:00"). */
function authorDate (unix: number, sign: string, hours: number, minutes: number): string {
  const offset = (sign === '-' ? -1 : 1) * (hours * 60 + minutes)
  if (!Number.isSafeInteger(unix) || Math.abs(unix) > 8.64e12) return ''
  const local = new Date((unix + offset * 60) * 1000).toISOString().slice(0, 19)
  if (offset === 0) return `${local}Z`
  return `${local}${sign}${String(hours).padStart(2, '0')}:${String(minutes).padStart(2, '0')}`
}

/** Throws unless `commit` is a full lowercase hex object name. */
export function checkCommit (commit: string): void {
  if (!COMMIT_HEX.test(commit)) {
    throw new QuorateError('USAGE', `"${commit.slice(0, 80)}" is not a full commit id; give 40 (or 64) lowercase hex digits`, { commit: commit.slice(0, 80) })
  }
}

/** A path inside a repository: relative, `/`-separated, no empty, `.` or `..` segments. */
function checkRepoPath (path: string): void {
  if (typeof path !== 'string' || path.length === 0 || path.length > 4096 || path.includes('\0') ||
      path.split('/').some(s => s === '' || s === '.' || s === '..')) {
    throw new QuorateError('USAGE',
      `readFile: "${String(path).slice(0, 200)}" is not a path inside the repository; give a relative path like ".quorate/recipe.json" (no leading "/", no "." or ".." segments)`,
      { path: String(path).slice(0, 200) })
  }
}

function stripPrefix (s: string, prefix: string): string {
  return s.startsWith(prefix) ? s.slice(prefix.length) : s
}

function httpsOrigin (url: string): string | null {
  if (!url.startsWith('https://')) return null
  try {
    const u = new URL(url)
    return `${u.protocol}//${u.host}/`
  } catch {
    return null
  }
}

function shellQuote (s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`
}

async function exists (path: string): Promise<boolean> {
  try {
    await access(path)
    return true
  } catch {
    return false
  }
}

/**
 * `quorate fetch`: download the output the quorum trusts, from any node that has it, trusting
 * none of them. The decision is made locally exactly like `quorate verify`; the file list is the
 * one the supporters signed (by digest); every file is checked by sha256 and cut off at its
 * declared size; the assembled tree is checked by narSha256 before it is moved into place in one
 * rename, so a failed or partial download never leaves a half tree behind.
 *
 * The file list is hostile input until the tree verifies: paths with `..`, `.`, empty or
 * absolute parts are refused, every parent must be a directory the list declares, files are
 * created with O_EXCL|O_NOFOLLOW (never written through a symlink), and symlinks are created
 * last.
 */
import { createHash } from 'node:crypto'
import {
  closeSync, constants, copyFileSync, existsSync, fchmodSync, ftruncateSync, lstatSync, mkdirSync, mkdtempSync, openSync,
  readFileSync, readdirSync, renameSync, rmSync, symlinkSync, writeSync
} from 'node:fs'
import { basename, dirname, join, resolve } from 'node:path'
import { tmpdir } from 'node:os'
import { QuorateError, isCommitSha, isSha256Hex, parseJsonStrict, type Policy } from '@quorate/core'
import { downloadFileList, verifyCommit, type VerifyReport } from './verify.js'
import { nodeClient, nodeBaseUrl as base } from './node-client.js'
import { DEFAULT_MAX_FILE_LIST_BYTES } from './blob-download.js'

export interface FetchRequest {
  nodes: string[]
  policy: Policy
  repoId: string
  /** The commit to fetch; or, with only `ref`, the latest trusted commit a quorum saw on it. */
  commit?: string
  /** Require the commit to have been seen on this ref (and, without `commit`, pick the latest on it). */
  ref?: string
  /** Where the tree goes: must not exist, or be an empty directory. */
  out: string
  /** The trusted result must be an OCI image: `out` then receives the image layout. */
  oci?: boolean
  /** Per-request timeout for JSON and file lists, ms. */
  timeoutMs?: number
  /** Read token for a private repository's file list and files (attestations are public). */
  token?: string
  /** Per-file download timeout, ms (default 10 minutes). */
  fileTimeoutMs?: number
  /** Files downloaded at once (default 8). */
  concurrency?: number
  onProgress?: (message: string) => void
}

export interface FetchFileEntry { path: string, type: 'file' | 'dir' | 'symlink', executable?: boolean, size?: number, sha256?: string, target?: string }

export interface FetchResult {
  exitCode: 0 | 1 | 2 | 3
  message: string
  commit?: string
  report?: VerifyReport
  narSha256?: string
  files?: number
  bytes?: number
  /** Where each file came from: url -> number of files. */
  servedBy?: Record<string, number>
  /** Copies refused (wrong content, too long, short, HTTP errors): the node named. */
  rejected: Array<{ url: string, path: string, sha256: string, reason: string }>
  /** OCI outputs: `name@sha256:<manifest digest>` of each trusted image. */
  images?: string[]
}

/** The most a trusted file list may weigh here (DEFAULT_MAX_FILE_LIST_BYTES: several million files). */
const MAX_FILE_LIST_BYTES = DEFAULT_MAX_FILE_LIST_BYTES
const MAX_ENTRIES = 2_000_000

/** Validates an untrusted file list into entries safe to create under a fresh directory. */
export function checkFileList (raw: unknown, what: string): FetchFileEntry[] {
  const bad = (msg: string): never => { throw new QuorateError('OUTPUT_INVALID', `${what}: ${msg}; the supporters signed a file list this command will not write`) }
  const doc = raw as { version?: unknown, files?: unknown }
  if (doc === null || typeof doc !== 'object' || doc.version !== 1 || !Array.isArray(doc.files)) bad('not a version 1 file list')
  const files = doc.files as unknown[]
  if (files.length > MAX_ENTRIES) bad(`more than ${MAX_ENTRIES} entries`)
  const byPath = new Map<string, FetchFileEntry>()
  for (const [i, f] of files.entries()) {
    const e = f as Record<string, unknown>
    if (e === null || typeof e !== 'object') bad(`entry ${i} is not an object`)
    const path = e.path
    if (typeof path !== 'string' || path.length === 0 || path.length > 4096 || !path.isWellFormed()) bad(`entry ${i}: path must be a non-empty string`)
    const p = path as string
    const shown = JSON.stringify(p.slice(0, 200))
    if (p.startsWith('/')) bad(`entry ${i}: absolute path ${shown}`)
    if (p.includes('\0')) bad(`entry ${i}: path ${shown} contains a NUL byte`)
    if (p.split('/').some(part => part === '' || part === '.' || part === '..')) bad(`entry ${i}: path ${shown} has an empty, "." or ".." part`)
    if (byPath.has(p)) bad(`entry ${i}: path ${shown} is listed twice`)
    const type = e.type
    if (type === 'dir') {
      byPath.set(p, { path: p, type })
    } else if (type === 'file') {
      if (typeof e.size !== 'number' || !Number.isSafeInteger(e.size) || e.size < 0) bad(`entry ${i} (${shown}): size must be a whole number ≥ 0`)
      if (!isSha256Hex(e.sha256)) bad(`entry ${i} (${shown}): sha256 must be 64 hex`)
      if (e.executable !== undefined && typeof e.executable !== 'boolean') bad(`entry ${i} (${shown}): executable must be true or false`)
      byPath.set(p, { path: p, type, size: e.size as number, sha256: e.sha256 as string, executable: e.executable === true })
    } else if (type === 'symlink') {
      if (typeof e.target !== 'string' || e.target.length === 0 || e.target.length > 4096 || e.target.includes('\0') || !e.target.isWellFormed()) bad(`entry ${i} (${shown}): target must be a non-empty string without NUL`)
      byPath.set(p, { path: p, type, target: e.target as string })
    } else {
      bad(`entry ${i} (${shown}): type must be file, dir or symlink`)
    }
  }
  // Every parent is a directory the list declares: nothing is ever created through a symlink or a file.
  for (const e of byPath.values()) {
    const slash = e.path.lastIndexOf('/')
    if (slash < 0) continue
    const parent = byPath.get(e.path.slice(0, slash))
    if (parent?.type !== 'dir') bad(`${JSON.stringify(e.path.slice(0, 200))} is inside ${JSON.stringify(e.path.slice(0, slash).slice(0, 200))}, which the list does not declare as a directory`)
  }
  return [...byPath.values()].sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)))
}

/** Asks the nodes for the latest trusted commit on `ref` and keeps the first one that verifies locally. */
async function latestOnRef (req: FetchRequest & { ref: string }): Promise<{ commit?: string, report?: VerifyReport, message: string }> {
  const votes = new Map<string, number>()
  await Promise.all(req.nodes.map(async url => {
    try {
      const c = (await nodeClient(url).get('latest', { repo: req.repoId }, { query: { ref: req.ref }, timeoutMs: req.timeoutMs })).commit
      if (isCommitSha(c)) votes.set(c, (votes.get(c) ?? 0) + 1)
    } catch {}
  }))
  if (votes.size === 0) return { message: `no node knows a trusted commit that a quorum saw on ${req.ref}` }
  if (votes.size > 1) req.onProgress?.(`the nodes name ${votes.size} different latest commits on ${req.ref} (${[...votes].map(([c, n]) => `${c.slice(0, 12)} by ${n}`).join(', ')}); trying the most named first`)
  let last: VerifyReport | undefined
  // Nodes only suggest: each candidate is decided locally, with the ref check, like verify --ref.
  for (const [commit] of [...votes].sort((a, b) => b[1] - a[1])) {
    const report = await verifyCommit({ nodes: req.nodes, policy: req.policy, repoId: req.repoId, commit, ref: req.ref, timeoutMs: req.timeoutMs })
    if (report.exitCode === 0) return { commit, report, message: report.message }
    last = report
  }
  return { report: last, message: last!.message }
}

/** The trusted file list, checked (downloadFileList, then checkFileList); or why not. */
async function fetchTrustedFileList (sources: string[], sha256: string, timeoutMs: number, token?: string): Promise<{ entries: FetchFileEntry[] } | { missing: string } | { invalid: string }> {
  const got = await downloadFileList(sources, sha256, { timeoutMs, maxBytes: MAX_FILE_LIST_BYTES, maxEntries: MAX_ENTRIES, ...(token !== undefined ? { token } : {}) })
  if ('rejected' in got) {
    const refusals = got.rejected.filter(r => r.reason !== 'HTTP 404')
    return { missing: refusals.length > 0 ? `; refused: ${refusals.map(r => `${r.url} ${r.reason}`).join('; ')}` : '' }
  }
  if ('invalid' in got) return got
  try {
    return { entries: checkFileList({ version: 1, files: got.files }, `file list ${sha256}`) }
  } catch (err) {
    return { invalid: (err as Error).message }
  }
}

/**
 * Streams one file into `fd` from `url`, hashing as it goes; stops at the declared size.
 * Returns why the copy is refused, or undefined when it is the right content.
 */
async function downloadInto (fd: number, url: string, sha256: string, size: number, timeoutMs: number, token?: string): Promise<string | undefined> {
  let res: Response
  try {
    res = await nodeClient(url, { token }).response('file', { sha256 }, { timeoutMs })
  } catch (err) {
    return (err as Error).message
  }
  if (!res.ok) { await res.body?.cancel().catch(() => {}); return `HTTP ${res.status}` }
  const hash = createHash('sha256')
  let pos = 0
  try {
    const reader = res.body!.getReader()
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      if (pos + value.byteLength > size) { await reader.cancel().catch(() => {}); return `sent more than the ${size} bytes the file list declares` }
      hash.update(value)
      let off = 0
      while (off < value.byteLength) off += writeSync(fd, value, off, value.byteLength - off, pos + off)
      pos += value.byteLength
    }
  } catch (err) {
    return `download broke off after ${pos} bytes (${(err as Error).message})`
  }
  if (pos !== size) return `sent ${pos} bytes, not the ${size} the file list declares`
  if (hash.digest('hex') !== sha256) return 'sent content that does not match its sha256'
  return undefined
}

/** A path that must be empty or absent; returns true when it exists (an empty directory). */
function checkDestination (dest: string, flag: string): boolean {
  let st
  try { st = lstatSync(dest) } catch { return false }
  if (!st.isDirectory() || readdirSync(dest).length > 0) throw new QuorateError('USAGE', `${flag} ${dest} exists and is not an empty directory; give a new path (fetch never mixes a trusted tree with other files)`)
  return true
}

/** Decides locally, downloads, verifies and moves the trusted output into `req.out`. */
export async function fetchTrustedOutput (req: FetchRequest): Promise<FetchResult> {
  const rejected: FetchResult['rejected'] = []
  const dest = resolve(req.out)
  const flag = req.oci === true ? '--oci' : '--out'
  checkDestination(dest, flag)
  const timeoutMs = req.timeoutMs ?? 20_000
  let commit = req.commit
  let report: VerifyReport | undefined
  if (commit === undefined) {
    if (req.ref === undefined) throw new QuorateError('USAGE', 'fetch needs --commit SHA, or --ref REF for the latest trusted commit on a ref')
    const latest = await latestOnRef({ ...req, ref: req.ref })
    if (latest.commit === undefined) return { exitCode: latest.report?.exitCode ?? 3, message: latest.message, rejected, ...(latest.report !== undefined ? { report: latest.report } : {}) }
    commit = latest.commit
    report = latest.report
  } else {
    report = await verifyCommit({ nodes: req.nodes, policy: req.policy, repoId: req.repoId, commit, ...(req.ref !== undefined ? { ref: req.ref } : {}), timeoutMs })
  }
  if (report!.exitCode !== 0) return { exitCode: report!.exitCode, message: report!.message, commit, report, rejected }
  const trusted = report!.decision!.trusted!
  const short = `${req.repoId}@${commit.slice(0, 12)}`
  if (req.oci === true && report!.images.length === 0) {
    return { exitCode: 1, message: `${short}: the trusted result has no OCI image (is the recipe's outputKind "oci"?); fetch it with --out`, commit, report, rejected }
  }
  // Any node may serve: the ones asked, then the supporters' public endpoints from the policy.
  const sources = [...new Set([...req.nodes.map(base), ...report!.decision!.supporters.map(s => req.policy.builders.get(s.builder)?.endpoint).filter((u): u is string => u !== undefined).map(base)])]
  const list = await fetchTrustedFileList(sources, trusted.fileListSha256, timeoutMs, req.token)
  if ('missing' in list) return { exitCode: 2, message: `${short}: no node served the trusted file list ${trusted.fileListSha256} (asked ${sources.join(', ')}${list.missing})`, commit, report, rejected }
  if ('invalid' in list) return { exitCode: 1, message: `${short}: ${list.invalid}`, commit, report, rejected }
  const entries = list.entries

  mkdirSync(dirname(dest), { recursive: true })
  // Staged next to the destination (same filesystem), so the final step is one rename.
  const staging = mkdtempSync(join(dirname(dest), `.${basename(dest)}.quorate-fetch-`))
  const tree = join(staging, 'tree')
  // Interrupted (Ctrl-C, a CI job cancelled): the staging directory goes too, DIR was never touched.
  const interrupted = (signal: NodeJS.Signals): void => {
    rmSync(staging, { recursive: true, force: true })
    process.exit(signal === 'SIGINT' ? 130 : 143)
  }
  process.once('SIGINT', interrupted)
  process.once('SIGTERM', interrupted)
  mkdirSync(tree, { mode: 0o755 })
  try {
    const servedBy: Record<string, number> = {}
    let bytes = 0
    const files = entries.filter(e => e.type === 'file').length
    // Directories first (parents before children: the list is sorted by path bytes).
    for (const e of entries) if (e.type === 'dir') mkdirSync(join(tree, e.path), { mode: 0o755 })
    // Each distinct content is downloaded once, several at a time; other paths with it are copies.
    const firstPath = new Map<string, FetchFileEntry>()
    const copies: FetchFileEntry[] = []
    for (const e of entries) {
      if (e.type !== 'file') continue
      if (firstPath.has(e.sha256!)) copies.push(e)
      else firstPath.set(e.sha256!, e)
    }
    const unique = [...firstPath.values()]
    let next = 0
    let done = 0
    let missing: FetchFileEntry | undefined
    const worker = async (): Promise<void> => {
      while (missing === undefined && next < unique.length) {
        const index = next++
        const e = unique[index]
        const fd = openSync(join(tree, e.path), constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600)
        let got = false
        try {
          // Spread the load: each file starts at another source, and goes round all of them.
          for (let k = 0; k < sources.length && !got; k++) {
            const url = sources[(index + k) % sources.length]
            const why = await downloadInto(fd, url, e.sha256!, e.size!, req.fileTimeoutMs ?? 600_000, req.token)
            if (why === undefined) { got = true; servedBy[url] = (servedBy[url] ?? 0) + 1; break }
            ftruncateSync(fd, 0)
            if (!why.startsWith('HTTP 404')) {
              rejected.push({ url, path: e.path, sha256: e.sha256!, reason: why })
              req.onProgress?.(`refused ${e.path} from ${url}: ${why}; trying another node`)
            }
          }
          fchmodSync(fd, e.executable === true ? 0o755 : 0o644)
        } finally {
          closeSync(fd)
        }
        if (!got) { missing ??= e; return }
        bytes += e.size!
        if (++done % 100 === 0) req.onProgress?.(`${done} of ${unique.length} files`)
      }
    }
    await Promise.all(Array.from({ length: Math.min(req.concurrency ?? 8, Math.max(1, unique.length)) }, worker))
    if (missing !== undefined) {
      const e = missing
      return { exitCode: 2, message: `${short}: no node served ${JSON.stringify(e.path)} (sha256 ${e.sha256}, ${e.size} bytes) with the right content (asked ${sources.join(', ')}${rejected.length > 0 ? `; refused ${rejected.length} wrong copies` : ''}); nothing was written to ${dest}`, commit, report, rejected }
    }
    for (const e of copies) {
      const p = join(tree, e.path)
      copyFileSync(join(tree, firstPath.get(e.sha256!)!.path), p, constants.COPYFILE_EXCL)
      const fd = openSync(p, constants.O_RDONLY | constants.O_NOFOLLOW)
      try { fchmodSync(fd, e.executable === true ? 0o755 : 0o644) } finally { closeSync(fd) }
      bytes += e.size!
    }
    // Symlinks last: nothing above is ever written through one.
    for (const e of entries) if (e.type === 'symlink') symlinkSync(e.target!, join(tree, e.path))

    const { hashOutput } = await import('@quorate/builder')
    let digest = await hashOutput(tree)
    let root = tree
    const top = entries.filter(e => !e.path.includes('/'))
    if (digest.narSha256 !== trusted.narSha256 && top.length === 1 && top[0].type !== 'dir') {
      // A single-file output is listed under its basename: its NAR is the file's, not a directory's.
      root = join(tree, top[0].path)
      digest = await hashOutput(root)
    }
    if (digest.narSha256 !== trusted.narSha256 || digest.fileListSha256 !== trusted.fileListSha256) {
      return { exitCode: 1, message: `${short}: the assembled tree hashes to narSha256 ${digest.narSha256}, not the trusted ${trusted.narSha256}; nothing was written to ${dest}`, commit, report, rejected }
    }
    let images: string[] | undefined
    if (req.oci === true) {
      images = checkOciLayout(tree, report!.images, short)
    }
    if (root !== tree) {
      // DIR receives the single file.
      if (!existsSync(dest)) mkdirSync(dest, { mode: 0o755 })
      renameSync(root, join(dest, top[0].path))
    } else {
      renameSync(tree, dest)
    }
    const via = Object.entries(servedBy).map(([u, n]) => `${n} from ${u}`).join(', ')
    return {
      exitCode: 0,
      message: `${short}: fetched ${files} files (${bytes} bytes) into ${dest}; narSha256 ${trusted.narSha256} verified (${trusted.supportingOrgs.length} organizations: ${trusted.supportingOrgs.join(', ')})${via !== '' ? `; ${via}` : ''}${rejected.length > 0 ? `; refused ${rejected.length} wrong copies` : ''}`,
      commit, report, narSha256: trusted.narSha256, files, bytes, servedBy, rejected, ...(images !== undefined ? { images } : {})
    }
  } finally {
    process.off('SIGINT', interrupted)
    process.off('SIGTERM', interrupted)
    rmSync(staging, { recursive: true, force: true })
  }
}

/** The fetched tree is an OCI image layout holding the trusted manifests; returns name@sha256 of each. */
function checkOciLayout (tree: string, images: Array<{ name: string, sha256: string }>, short: string): string[] {
  let index: { manifests?: Array<{ digest?: unknown }> }
  try {
    index = parseJsonStrict(readFileSync(join(tree, 'index.json'), 'utf8'), 'index.json') as typeof index
  } catch (err) {
    throw new QuorateError('OUTPUT_INVALID', `${short}: the trusted output is not an OCI image layout (index.json: ${(err as Error).message})`)
  }
  const digests = new Set((index.manifests ?? []).map(m => m.digest))
  for (const img of images) {
    if (!digests.has(`sha256:${img.sha256}`) || !existsSync(join(tree, 'blobs', 'sha256', img.sha256))) {
      throw new QuorateError('OUTPUT_INVALID', `${short}: the OCI layout does not hold the trusted manifest sha256:${img.sha256} (${img.name})`)
    }
  }
  return images.map(i => `${i.name}@sha256:${i.sha256}`)
}

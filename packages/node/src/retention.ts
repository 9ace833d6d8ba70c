import type { Decision } from '@quorate/core'
import type { KeptBuild, Store } from '@quorate/store'
import { FileListScanner } from '@quorate/builder'
import type { RetentionConfig } from './config.js'
import type { Logger } from './logger.js'

export interface RetentionComponents {
  store: Pick<Store, 'keptBuilds' | 'forgetKept' | 'openBlob' | 'deleteBlob' | 'deleteBuildLog' | 'buildLog' | 'deleteOutputFile'>
  /** The node's decision for a commit (is this build's output the trusted one?). */
  decision: (repoId: string, commit: string) => Promise<Pick<Decision, 'status' | 'trusted'>>
  /** Cached build roots, when the node has a root cache. */
  roots?: { prune: (cutoff: number) => Promise<{ roots: number, bytes: number }> }
  logger: Logger
}

export interface RetentionReport {
  /** Builds whose outputs and logs were removed. */
  removed: number
  kept: number
  /** Bytes of outputs and logs removed (as recorded when they were kept). */
  bytesRemoved: number
  /** Builds kept beyond the count or size bound because a trusted decision rests on them. */
  keptForTrust: number
  rootsRemoved: number
}

const DAY_MS = 24 * 60 * 60 * 1000

/**
 * Retention (README "Retention"): a node keeps the outputs, file lists and logs of its builds
 * newest first while they are younger than maxAgeDays, within maxBuilds and within maxBytes.
 * A build whose output is its commit's trusted result is kept for the whole age window even
 * beyond the count and size bounds (`verify --artifact` and `fetch` need its file list and
 * files); past the window everything goes. Content shared with a build still kept (the same file
 * in two builds) stays. Cached build roots unused for longer than the window go too.
 */
export async function runRetention (policy: RetentionConfig, c: RetentionComponents, now = Date.now()): Promise<RetentionReport> {
  const all: Array<{ key: string, build: KeptBuild }> = []
  for await (const k of c.store.keptBuilds()) all.push(k)
  // Newest first: the bounds keep the newest builds.
  all.reverse()
  const cutoff = policy.maxAgeDays > 0 ? now - policy.maxAgeDays * DAY_MS : -Infinity
  const keep: typeof all = []
  const drop: typeof all = []
  let count = 0
  let bytes = 0
  let keptForTrust = 0
  for (const k of all) {
    const b = k.build
    if (b.keptAt < cutoff) { drop.push(k); continue }
    const withinBounds = (policy.maxBuilds === 0 || count < policy.maxBuilds) && (policy.maxBytes === 0 || bytes + b.bytes <= policy.maxBytes)
    if (withinBounds) {
      keep.push(k)
      count++
      bytes += b.bytes
      continue
    }
    if (b.narSha256 !== undefined && await isTrusted(c, b)) {
      keep.push(k)
      keptForTrust++
      continue
    }
    drop.push(k)
  }
  const report: RetentionReport = { removed: 0, kept: keep.length, bytesRemoved: 0, keptForTrust, rootsRemoved: 0 }
  if (drop.length > 0) {
    // What the kept builds still use is never removed (content addresses are shared).
    const used = new Set<string>()
    for (const { build } of keep) for (const sha of await contentOf(c, build)) used.add(sha)
    for (const { key, build } of drop) {
      const logMeta = build.logSha256 !== undefined ? await c.store.buildLog(build.logSha256) : undefined
      for (const sha of await contentOf(c, build, false)) {
        if (used.has(sha)) continue
        await c.store.deleteOutputFile(sha)
      }
      if (build.fileListSha256 !== undefined && !used.has(build.fileListSha256)) await c.store.deleteBlob(build.fileListSha256)
      if (build.logSha256 !== undefined && !used.has(build.logSha256) && (logMeta === undefined || !used.has(logMeta.meta.keptSha256))) await c.store.deleteBuildLog(build.logSha256)
      await c.store.forgetKept(key)
      report.removed++
      report.bytesRemoved += build.bytes
    }
  }
  if (c.roots !== undefined && Number.isFinite(cutoff)) report.rootsRemoved = (await c.roots.prune(cutoff)).roots
  if (report.removed > 0 || report.rootsRemoved > 0) {
    c.logger.info('retention', { removedBuilds: report.removed, bytes: report.bytesRemoved, keptBuilds: report.kept, keptForTrust, rootsRemoved: report.rootsRemoved })
  }
  return report
}

async function isTrusted (c: RetentionComponents, b: KeptBuild): Promise<boolean> {
  try {
    const d = await c.decision(b.repoId, b.commit)
    return d.status === 'trusted' && d.trusted?.narSha256 === b.narSha256
  } catch {
    return true // when in doubt, keep
  }
}

/** The content addresses a kept build holds: its log, file list and output files (from its file list). */
async function contentOf (c: RetentionComponents, b: KeptBuild, withLists = true): Promise<string[]> {
  const out: string[] = []
  if (b.logSha256 !== undefined) {
    out.push(b.logSha256)
    const meta = await c.store.buildLog(b.logSha256)
    if (meta !== undefined) out.push(meta.meta.keptSha256)
  }
  if (b.fileListSha256 !== undefined) {
    if (withLists) out.push(b.fileListSha256)
    // Read entry by entry, a megabyte at a time: the list of a 500,000-file output is about 60 MB,
    // and parsing it whole took hundreds of megabytes every time retention ran.
    const list = await c.store.openBlob(b.fileListSha256)
    if (list !== undefined) {
      const found: string[] = []
      try {
        const scanner = new FileListScanner(`file list ${b.fileListSha256}`)
        for (let at = 0; at < list.size; at += 1024 * 1024) {
          for (const f of scanner.push(await list.read(at, 1024 * 1024))) if (f.type === 'file' && typeof f.sha256 === 'string') found.push(f.sha256)
        }
        scanner.end()
      } catch {
        // Not in the canonical layout (lists from before it was required): parsed whole, as before.
        found.length = 0
        try {
          if (list.size <= 64 * 1024 * 1024) {
            const parsed = JSON.parse(Buffer.from(await list.read(0, list.size)).toString('utf8')) as { files?: Array<{ type?: string, sha256?: string }> }
            for (const f of parsed.files ?? []) if (f.type === 'file' && typeof f.sha256 === 'string') found.push(f.sha256)
          }
        } catch {}
      } finally {
        await list.close()
      }
      for (const h of found) out.push(h)
    }
  }
  return out
}

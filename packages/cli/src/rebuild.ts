import { randomUUID } from 'node:crypto'
import { chmod, lstat, mkdir, mkdtemp, rm } from 'node:fs/promises'
import { homedir, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import {
  QuorateError, decideQuorum, diffFileLists, isCommitSha, parseRootImage, rootRegistriesOf,
  type Policy, type RecipeSpec
} from '@quorate/core'
import type { BuildRootCache, RegistryAccess } from '@quorate/builder'
import { loadPolicyFile } from '@quorate/node/config'
import { fetchFileList, gatherFromNodes } from './verify.js'

export const REBUILD_USAGE = `quorate rebuild --policy FILE --repo ID --commit SHA [--out DIR] [--node URL]... [--sandbox bwrap|none]
                [--root-cache DIR] [--insecure-registry HOST:PORT]... [--keep-work] [--json]`

export interface RebuildReport {
  repoId: string
  commit: string
  recipeDigest: string | null
  /** The root the build ran in (image, manifest digest), or null for the host's toolchain. */
  root: { image: string, manifestDigest: string, indexDigest?: string } | null
  sandbox: 'bwrap' | 'none'
  ok: boolean
  narSha256: string | null
  fileListSha256: string | null
  failure?: string
  /** With --node: the quorum's answer, decided here from the nodes' envelopes against the policy. */
  network?: { status: string, trustedNarSha256: string | null, matches: boolean | null, differences?: string[] }
  exitCode: number
}

/**
 * `quorate rebuild`: reproduces one commit outside the network, with no node and no keys: a
 * fresh clone, the policy's recipe (or the commit's .quorate/recipe.json), the same sandbox,
 * fixed paths, environment and SOURCE_DATE_EPOCH a node uses, and the pinned root when the
 * recipe has one. Prints the narSha256 and, given nodes, whether it matches the quorum.
 * Exit codes: 0 built (and matching, with --node), 1 the build failed or does not match,
 * 2 usage or I/O error, 3 the network has no trusted result to compare with.
 */
export async function cmdRebuild (args: string[], out: { print: (s: string) => void, printErr: (s: string) => void }): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      policy: { type: 'string' },
      repo: { type: 'string' },
      commit: { type: 'string' },
      out: { type: 'string' },
      node: { type: 'string', multiple: true },
      sandbox: { type: 'string' },
      'root-cache': { type: 'string' },
      'insecure-registry': { type: 'string', multiple: true },
      'keep-work': { type: 'boolean' },
      json: { type: 'boolean' }
    }
  })
  if (values.policy === undefined || values.repo === undefined || values.commit === undefined) {
    throw new QuorateError('USAGE', `rebuild needs --policy, --repo and --commit\n\n${REBUILD_USAGE}`)
  }
  const commit = values.commit.toLowerCase()
  if (!isCommitSha(commit)) throw new QuorateError('USAGE', `--commit must be a full commit id (40 or 64 hex), not ${JSON.stringify(values.commit)}`)
  const sandbox = values.sandbox ?? 'bwrap'
  if (sandbox !== 'bwrap' && sandbox !== 'none') throw new QuorateError('USAGE', '--sandbox must be bwrap or none')
  const policy: Policy = loadPolicyFile(resolve(values.policy))
  const repo = policy.repositories.get(values.repo)
  if (repo === undefined) throw new QuorateError('USAGE', `${values.policy} has no repository "${values.repo}" (it has: ${[...policy.repositories.keys()].join(', ')})`)
  const { GitMirror, runBuild, BuildRootCache, prepareBuildArea, resolveBuildUser, readRepoRecipe } = await import('@quorate/builder')
  const { recipeDigestOf } = await import('@quorate/core')

  const work = await mkdtemp(join(tmpdir(), 'quorate-rebuild-'))
  // The same build user a node uses: as root, an unprivileged uid that must reach the work dir and the root cache.
  const user = resolveBuildUser()
  let area: string | undefined
  try {
    area = await prepareBuildArea({ user, dataDir: work, defaultDir: join(work, 'builds') })
    out.printErr(`quorate rebuild: cloning ${repo.id} (${commit.slice(0, 12)})`)
    const mirror = new GitMirror({ url: repo.url, dir: join(work, 'mirror.git') })
    await mirror.fetch()
    let spec: RecipeSpec
    if (repo.recipe !== undefined) {
      spec = repo.recipe
    } else {
      // Read (and its limits capped) exactly as nodes read it.
      const read = await readRepoRecipe(mirror, commit, { requireRoot: repo.requireRoot })
      if (!read.ok) throw new QuorateError('RECIPE_INVALID', `${repo.id}@${commit.slice(0, 12)}: ${read.reason}; nodes sign a failure for this commit`)
      spec = read.spec
    }
    let rootCache: BuildRootCache | undefined
    if (spec.recipe.root !== undefined) {
      const ref = parseRootImage(spec.recipe.root.image, 'recipe.root.image')
      const registries: Record<string, RegistryAccess> = {}
      for (const host of values['insecure-registry'] ?? []) registries[host] = { insecure: true }
      rootCache = new BuildRootCache({
        dir: await rootCacheDir(values['root-cache'], user.drop),
        // The policy's registries, and the one this recipe names: you asked for this rebuild.
        allowedRegistries: [...new Set([...rootRegistriesOf(policy), ref.registry])],
        registries
      })
      out.printErr(`quorate rebuild: build root ${ref.image}`)
    } else {
      out.printErr('quorate rebuild: the recipe pins no build root; building with this host\'s toolchain (results match nodes only when the toolchains are identical)')
    }
    const outcome = await runBuild({
      repoId: repo.id,
      commit,
      ref: 'refs/quorate/rebuild',
      mirror,
      workDir: join(area, randomUUID()),
      recipe: spec.recipe,
      limits: spec.limits,
      sandbox,
      ...(values.out !== undefined ? { outputCopyDir: resolve(values.out) } : {}),
      ...(rootCache !== undefined ? { rootCache } : {}),
      keepWorkDir: values['keep-work'] === true,
      onProgress: phase => out.printErr(`quorate rebuild: ${phase}`)
    })
    const report: RebuildReport = {
      repoId: repo.id,
      commit,
      recipeDigest: recipeDigestOf(spec.recipe),
      root: outcome.fingerprint.root !== undefined
        ? { image: outcome.fingerprint.root.image, manifestDigest: outcome.fingerprint.root.manifestDigest, ...(outcome.fingerprint.root.indexDigest !== undefined ? { indexDigest: outcome.fingerprint.root.indexDigest } : {}) }
        : null,
      sandbox,
      ok: outcome.ok,
      narSha256: outcome.ok ? outcome.output.narSha256 : null,
      fileListSha256: outcome.ok ? outcome.output.fileListSha256 : null,
      exitCode: outcome.ok ? 0 : 1
    }
    if (!outcome.ok) {
      report.failure = outcome.reason
    } else if (values.node !== undefined && values.node.length > 0) {
      const evidence = await gatherFromNodes(values.node, repo.id, commit)
      const decision = decideQuorum({ policy, repoId: repo.id, commit, envelopes: evidence.envelopes, equivocationProofs: evidence.proofs })
      const trusted = decision.trusted
      if (decision.status !== 'trusted' || trusted === undefined) {
        report.network = { status: decision.status, trustedNarSha256: null, matches: null }
        report.exitCode = 3
      } else {
        const matches = trusted.narSha256 === outcome.output.narSha256 && trusted.fileListSha256 === outcome.output.fileListSha256
        report.network = { status: 'trusted', trustedNarSha256: trusted.narSha256, matches }
        if (!matches) {
          report.exitCode = 1
          const theirs = await fetchFileList(values.node, trusted.fileListSha256)
          if (theirs !== undefined) {
            const d = diffFileLists(theirs, outcome.output.fileList)
            report.network.differences = [
              ...d.added.map(f => `only here: ${f.path}`),
              ...d.removed.map(f => `only in the trusted output: ${f.path}`),
              ...d.changed.map(c => `differs (${c.differs.join(', ')}): ${c.path}`)
            ]
          }
        }
      }
    }
    if (values.json === true) {
      out.print(JSON.stringify(report, null, 2))
    } else if (!report.ok) {
      out.printErr(`FAILED: the build of ${repo.id}@${commit.slice(0, 12)} failed: ${report.failure ?? ''}`)
    } else {
      out.print(report.narSha256 as string)
      const where = report.root !== null ? `in build root ${report.root.manifestDigest}` : 'with the host toolchain (no build root pinned)'
      if (report.network === undefined) out.printErr(`built ${repo.id}@${commit.slice(0, 12)} ${where}: narSha256 ${report.narSha256 ?? ''}`)
      else if (report.network.matches === null) out.printErr(`built ${where}; the network has no trusted result for this commit (${report.network.status}), nothing to compare`)
      else if (report.network.matches) out.printErr(`MATCH: the rebuild ${where} equals the quorum's trusted result ${report.network.trustedNarSha256 ?? ''}`)
      else {
        out.printErr(`MISMATCH: the rebuild ${where} gives ${report.narSha256 ?? ''}, the quorum trusted ${report.network.trustedNarSha256 ?? ''}`)
        for (const line of (report.network.differences ?? []).slice(0, 50)) out.printErr(`  ${line}`)
      }
    }
    return report.exitCode
  } finally {
    if (values['keep-work'] !== true) {
      await rm(work, { recursive: true, force: true })
      if (area !== undefined) await rm(area, { recursive: true, force: true })
    } else {
      out.printErr(`quorate rebuild: work directories kept at ${work} and ${area ?? ''}`)
    }
  }
}

/**
 * The root cache: --root-cache, else the user's cache dir; as root (the build runs as an
 * unprivileged uid that must reach it) a root-owned directory under the temp dir that no one
 * else can write.
 */
async function rootCacheDir (given: string | undefined, drop: boolean): Promise<string> {
  const dir = resolve(given ?? (drop ? join(tmpdir(), 'quorate-rebuild-roots') : join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'quorate', 'roots')))
  await mkdir(dir, { recursive: true, mode: 0o755 })
  if (drop) {
    const st = await lstat(dir)
    if (!st.isDirectory() || st.uid !== 0 || (st.mode & 0o022) !== 0) {
      throw new QuorateError('USAGE', `the root cache ${dir} is not a directory owned by root and writable only by it; remove it or give --root-cache`)
    }
    await chmod(dir, 0o755)
  }
  return dir
}

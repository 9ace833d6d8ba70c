import { spawn } from 'node:child_process'
import { chmod, lstat, mkdir, readdir, readlink, rm, writeFile } from 'node:fs/promises'
import { constants as osConstants } from 'node:os'
import { join } from 'node:path'
import { QuorateError, isQuorateError, type Recipe, type RecipeLimits } from '@quorate/core'
import { LogCapture, type CapturedLog } from './captured-log.js'
import { killGroup } from './child-process.js'
import { createBuildCgroup, diskUsage, type BuildCgroup, type LimitsMechanism } from './containment.js'
import { environmentFingerprint, type EnvironmentFingerprint } from './fingerprint.js'
import { checkCommit, type GitMirror } from './git-mirror.js'
import { hashOutput, type OutputDigest } from './hash-output.js'
import { removeTree } from './remove-tree.js'
import { packOciImage, type OciImageSpec } from './oci-image.js'
import { assertSearchable, giveTree, resolveBuildUser, type BuildUser } from './build-user.js'
import type { BuildRootCache, BuildRootLease } from './build-root.js'
import { DEFAULT_FETCH_NETWORK, type FetchNetworkPolicy } from './fetch-network.js'
import type { FetchCache, FetchCacheLease, FetchCacheReport } from './fetch-cache.js'
import { assertRoomForBuild, diskNearlyFull, isNodeTrouble, nodeTrouble } from './node-trouble.js'
import { BUILD_PATH, CLOSE_INHERITED_FDS, SANDBOX_HOME, SANDBOX_SRC, bwrapArgs, findFetchNetworkTools, findOnPath, probeSandbox, sandboxEtcFiles, sandboxLaunchArgv, type SandboxTools } from './sandbox.js'

export type BuildPhase = 'root' | 'checkout' | 'fetch' | 'build' | 'pack' | 'hash'

export interface BuildRequest {
  repoId: string
  commit: string
  ref: string
  mirror: GitMirror
  /** A fresh scratch directory (missing or empty) that the runner owns; removed afterwards unless keepWorkDir. */
  workDir: string
  recipe: Recipe
  limits: RecipeLimits
  sandbox: 'bwrap' | 'none'
  /** Copy the output here as it is hashed (see HashOutputOptions.copyTo); removed again if the build fails. */
  outputCopyDir?: string
  /** Write the file list here instead of returning its bytes (HashOutputOptions.fileListTo); removed again if the build fails. */
  fileListPath?: string
  /** Aborting kills every process of the build; runBuild then rejects (nothing is an outcome). */
  signal?: AbortSignal
  /**
   * Called when a phase starts, and every progressIntervalMs while one runs with
   * `{ tick: true, elapsedMs, phaseElapsedMs, logBytes }` (elapsed since the build started).
   */
  onProgress?: (phase: BuildPhase, info?: Record<string, unknown>) => void
  /** How often onProgress hears that a phase is still running (default 15 s). */
  progressIntervalMs?: number
  /** Keep workDir for inspection instead of removing it. */
  keepWorkDir?: boolean
  /** The host user the build runs as (default: resolveBuildUser(), an unprivileged uid under a root node). */
  user?: BuildUser
  /** What the fetch phase may reach (default: the internet only). */
  fetchNetwork?: FetchNetworkPolicy
  /**
   * Where a recipe's pinned build root (recipe.root) comes from. Pulling, verifying or unpacking
   * it failing rejects with ROOT_UNAVAILABLE (the node's trouble, never a build failure).
   */
  rootCache?: BuildRootCache
  /**
   * The node's fetch cache (node config `fetchCache`): npm's cache for this repository and
   * build root, mounted at `$HOME/.npm` in the fetch phase only, checked by the node before and
   * after (see fetch-cache.ts). Used only under bwrap and only by recipes with a fetch phase.
   */
  fetchCache?: FetchCache
}

export interface BuildDurations {
  /** Getting the build root ready (a pull and unpack, or a cache hit); recipes with a root only. */
  root?: number
  checkout: number
  fetch: number
  build: number
  /** Packing the OCI image (outputKind "oci" only). */
  pack?: number
  hash: number
}

export interface BuildSuccess {
  ok: true
  /** The output's digests; for outputKind "oci", of the OCI image layout the builder packed. */
  output: OutputDigest
  /**
   * outputKind "oci" only: the image, named by its ref name (recipe.image.refName, else
   * `<repoId>:<commit>`), with the hex SHA-256 of its manifest (the attestation's extra subject).
   */
  images?: Array<{ name: string, sha256: string }>
  log: CapturedLog
  startedOn: string
  finishedOn: string
  durationsMs: BuildDurations
  fingerprint: EnvironmentFingerprint
}

export interface BuildFailure {
  ok: false
  /** What went wrong, in words for the failure attestation and the operator. */
  reason: string
  /** The failing command's exit status (128+N when killed by signal N); null when it timed out or never ran. */
  exitStatus: number | null
  timedOut: boolean
  log: CapturedLog
  startedOn: string
  finishedOn: string
  fingerprint: EnvironmentFingerprint
}

export type BuildOutcome = BuildSuccess | BuildFailure

/** How long a build's pipes may stay open after its processes were killed (only an escaped process holds them). */
const PIPE_GRACE_MS = 1000

/**
 * Builds one commit: a fresh checkout, the recipe's optional fetch phase (network on) and its
 * build phase (network off under bwrap) in a scrubbed environment, then the output's NAR hash
 * and file list. A build that fails, times out or produces no valid output is an `ok: false`
 * outcome; only problems of the node itself (no mirror, no git, no bubblewrap, a full disk)
 * and cancellation through `signal` reject.
 */
export async function runBuild (request: BuildRequest): Promise<BuildOutcome> {
  const ticker = progressTicker(request)
  try {
    return await runBuildTicking(ticker.request, ticker)
  } finally {
    ticker.stop()
  }
}

interface ProgressTicker {
  request: BuildRequest
  log?: LogCapture
  stop: () => void
}

/** Wraps request.onProgress so a long phase keeps saying it is running (phase, elapsed time, log size). */
function progressTicker (request: BuildRequest): ProgressTicker {
  const onProgress = request.onProgress
  const ticker: ProgressTicker = { request, stop: () => {} }
  if (onProgress === undefined) return ticker
  const started = performance.now()
  let phase: BuildPhase | null = null
  let phaseStarted = started
  const timer = setInterval(() => {
    if (phase === null) return
    const now = performance.now()
    onProgress(phase, { tick: true, elapsedMs: Math.round(now - started), phaseElapsedMs: Math.round(now - phaseStarted), logBytes: ticker.log?.totalBytes ?? 0 })
  }, request.progressIntervalMs ?? 15_000)
  timer.unref()
  ticker.stop = () => clearInterval(timer)
  ticker.request = {
    ...request,
    onProgress: (p, info) => {
      phase = p
      phaseStarted = performance.now()
      onProgress(p, info)
    }
  }
  return ticker
}

async function runBuildTicking (request: BuildRequest, ticker: ProgressTicker): Promise<BuildOutcome> {
  const startedOn = new Date().toISOString()
  const { recipe, limits, sandbox } = request
  checkCommit(request.commit)
  const user = request.user ?? resolveBuildUser()
  let tools: SandboxTools | null = null
  let pasta: string | null = null
  if (sandbox === 'bwrap') {
    const found = await probeSandbox(user)
    if (typeof found === 'string') {
      throw new QuorateError('SANDBOX_UNAVAILABLE',
        `${found}; or set "sandbox": "none" in the node config to build without isolation`)
    }
    tools = found
    if (recipe.fetch !== undefined) {
      const net = await findFetchNetworkTools()
      if ('problem' in net) throw new QuorateError('SANDBOX_UNAVAILABLE', `${net.problem}; the build waits until it is there`)
      pasta = net.pasta
    }
  }
  const bwrap = tools?.bwrap ?? null
  let root: BuildRootLease | undefined
  let rootMs: number | undefined
  if (recipe.root !== undefined) {
    if (tools === null) {
      throw new QuorateError('SANDBOX_UNAVAILABLE', `the recipe pins a build root (${recipe.root.image}), which is mounted by the bwrap sandbox; this node builds with "sandbox": "none" and cannot honour it`)
    }
    if (request.rootCache === undefined) {
      throw new QuorateError('ROOT_UNAVAILABLE', `the recipe pins a build root (${recipe.root.image}) but this node has no build root cache configured`, { image: recipe.root.image, kind: 'config' })
    }
    request.onProgress?.('root', { image: recipe.root.image })
    const t = performance.now()
    root = await request.rootCache.acquire(recipe.root.image)
    rootMs = performance.now() - t
  }
  try {
    return await runBuildIn(request, { user, tools, pasta, bwrap, root, rootMs, startedOn, ticker })
  } finally {
    root?.release()
  }
}

async function runBuildIn (request: BuildRequest, o: {
  user: BuildUser
  tools: SandboxTools | null
  pasta: string | null
  bwrap: string | null
  root: BuildRootLease | undefined
  rootMs: number | undefined
  startedOn: string
  ticker: ProgressTicker
}): Promise<BuildOutcome> {
  const { recipe, limits, sandbox } = request
  const { user, tools, pasta, bwrap, root, startedOn } = o
  // The build user (bwrap runs as it) must reach the root it mounts.
  if (root !== undefined) await assertSearchable(root.dir, user)
  checkNotAborted(request)
  await prepareWorkDir(request.workDir)
  // Room for the build's work-directory quota (maxOutputBytes, enforced while it runs): a build
  // that fills it fails by its own limit; a node with less room waits (NODE_TROUBLE).
  await assertRoomForBuild(request.workDir, limits.maxOutputBytes)
  // The build user must reach its work dir (and, under a root node, nothing else of the node's).
  if (tools !== null) await assertSearchable(request.workDir, user)
  if (request.outputCopyDir !== undefined && (await readdir(request.outputCopyDir).catch(() => [])).length > 0) {
    throw new QuorateError('USAGE', `the output copy directory ${request.outputCopyDir} is not empty; give a new or empty directory`, { outputCopyDir: request.outputCopyDir })
  }
  const baseFingerprint = environmentFingerprint(recipe, sandbox, root)
  let mechanism: LimitsMechanism = 'rlimit'
  const fingerprint = async (): Promise<EnvironmentFingerprint> => ({ ...await baseFingerprint, limits: mechanism })
  const log = new LogCapture(limits.maxLogBytes)
  o.ticker.log = log
  const durationsMs: BuildDurations = { ...(o.rootMs !== undefined ? { root: o.rootMs } : {}), checkout: 0, fetch: 0, build: 0, hash: 0 }
  const src = join(request.workDir, 'src')
  const home = join(request.workDir, 'home')
  const etcDir = join(request.workDir, 'sandbox-etc')
  const fail = async (reason: string, exitStatus: number | null, timedOut: boolean): Promise<BuildFailure> => {
    if (request.outputCopyDir !== undefined) await removeTree(request.outputCopyDir)
    if (request.fileListPath !== undefined) await rm(request.fileListPath, { force: true })
    return { ok: false, reason, exitStatus, timedOut, log: log.result(), startedOn, finishedOn: new Date().toISOString(), fingerprint: await fingerprint() }
  }

  let cgroup: BuildCgroup | null = null
  let cacheLease: FetchCacheLease | undefined
  // recipe.image is parsed with the recipe (core's parseRecipe); only its use without "oci" is left to refuse.
  const imageSpec: OciImageSpec | undefined = recipe.outputKind === 'oci' ? recipe.image ?? {} : undefined
  if (imageSpec === undefined && recipe.image !== undefined) {
    if (request.keepWorkDir !== true) await removeTree(request.workDir)
    return await fail('the recipe is invalid: recipe.image: is used only with "outputKind": "oci"; remove it or set outputKind to "oci"', null, false)
  }
  let step = 'checking out the commit'
  try {
    request.onProgress?.('checkout', { commit: request.commit })
    let t = performance.now()
    await request.mirror.checkout(request.commit, src)
    const sourceDateEpoch = await request.mirror.commitTime(request.commit)
    // Explicit modes: the node's umask must not show inside the build.
    await mkdir(home)
    await chmod(home, 0o755)
    if (bwrap !== null) {
      await giveTree(src, user)
      await giveTree(home, user)
      await mkdir(etcDir)
      for (const [name, content] of Object.entries(sandboxEtcFiles())) {
        await writeFile(join(etcDir, name), content)
        await chmod(join(etcDir, name), 0o644)
      }
    }
    durationsMs.checkout = performance.now() - t
    checkNotAborted(request)

    const env: Record<string, string> = {
      PATH: BUILD_PATH,
      HOME: bwrap !== null ? SANDBOX_HOME : home,
      TZ: 'UTC',
      LC_ALL: 'C.UTF-8',
      LANG: 'C.UTF-8',
      SOURCE_DATE_EPOCH: String(sourceDateEpoch)
    }
    cgroup = await createBuildCgroup(limits)
    if (cgroup !== null) mechanism = 'cgroup'
    const wrapper = await limitsWrapper(limits, cgroup === null, root?.dir)
    // What the build writes is bounded while it runs: the work dir is on the node's disk.
    const diskBaseline = await diskUsage(request.workDir)
    const group = cgroup
    // A build that hit a limit is stopped even if it would carry on (its forks or allocations
    // failed, so its result would depend on timing), and reported as such even if it exited.
    const limitHit = async (): Promise<string | null> => {
      if (group !== null && await group.pidsLimitHit()) {
        return `the build tried to run more than ${limits.maxProcesses} processes at once (the recipe's maxProcesses); every process of the build was killed`
      }
      if (group !== null && await group.oomKills() > 0) {
        return `the build used more than ${limits.memoryBytes} bytes of memory (the recipe's memoryBytes) and the kernel killed a process; every process of the build was killed`
      }
      return null
    }
    const watch = async (): Promise<string | null> => {
      const hit = await limitHit()
      if (hit !== null) return hit
      const written = await diskUsage(request.workDir, diskBaseline + limits.maxOutputBytes + METADATA_ALLOWANCE_BYTES) - diskBaseline + await cacheWritten()
      // Counted in allocated blocks: a directory or a large file's extent blocks are not output,
      // so a build that stays within its per-file limit is never stopped by them (the allowance).
      if (written > limits.maxOutputBytes + METADATA_ALLOWANCE_BYTES) {
        return `the build wrote more than ${limits.maxOutputBytes} bytes (the recipe's maxOutputBytes) to its work directory${cacheInUse !== null ? ' and the fetch cache' : ''}; every process of the build was killed`
      }
      return null
    }
    // The fetch cache, locked for this build's fetch phase: waiting for another build of the
    // repository to finish its fetch phase is not the build's time, so it comes before the deadline.
    let cacheBaseline = 0
    if (recipe.fetch !== undefined && request.fetchCache !== undefined && tools !== null) {
      step = 'checking the fetch cache'
      cacheLease = await request.fetchCache.acquire(request.repoId, root?.manifestDigest, request.signal)
      checkNotAborted(request)
      log.push(`quorate: fetch cache: npm's cache of earlier builds of this repository at $HOME/.npm (${describeCache(cacheLease.before)}), for the fetch phase only\n`)
      cacheBaseline = await diskUsage(cacheLease.npmDir)
    }
    // What the fetch phase writes to the cache counts against maxOutputBytes like its work dir.
    let cacheInUse: string | null = null
    const cacheWritten = async (): Promise<number> => cacheInUse === null ? 0 : await diskUsage(cacheInUse, cacheBaseline + limits.maxOutputBytes + METADATA_ALLOWANCE_BYTES) - cacheBaseline
    // One wall-clock budget for fetch and build together.
    const deadline = Date.now() + limits.timeoutSeconds * 1000
    const phases: Array<{ phase: 'fetch' | 'build', argv: string[], network: boolean }> = []
    if (recipe.fetch !== undefined) phases.push({ phase: 'fetch', argv: recipe.fetch, network: true })
    phases.push({ phase: 'build', argv: recipe.build, network: false })

    for (const { phase, argv, network } of phases) {
      step = `running the ${phase} phase`
      request.onProgress?.(phase, { argv })
      t = performance.now()
      log.push(`quorate: ${phase} phase: ${JSON.stringify(argv)}\n`)
      const command = ['/bin/sh', '-c', wrapper, 'sh', ...argv]
      const npmCache = phase === 'fetch' ? cacheLease?.npmDir : undefined
      cacheInUse = npmCache ?? null
      // The first process joins the build's cgroup before it starts anything else.
      const enrol = cgroup !== null ? ['/bin/sh', '-c', ENROL, 'sh', ...cgroup.procsFiles, '--'] : []
      const full = tools !== null
        ? sandboxLaunchArgv({
          tools,
          user,
          enrol,
          network: network && pasta !== null ? { pasta, policy: request.fetchNetwork ?? DEFAULT_FETCH_NETWORK } : undefined,
          bwrapArgs: bwrapArgs({ network, src, home, etcDir, root: root?.dir, ...(npmCache !== undefined ? { npmCache } : {}) }),
          command
        })
        : [...await closerPrefix(), ...enrol, ...command]
      const r = await runPhase(full, { cwd: src, env, deadline, log, signal: request.signal, cgroup, watch, limitHit })
      durationsMs[phase] = performance.now() - t
      if (npmCache !== undefined && cacheLease !== undefined) {
        // Every process of the phase is gone: check what it left in the cache, then unlock it.
        cacheInUse = null
        step = 'checking the fetch cache'
        const after = await cacheLease.release()
        log.push(`quorate: fetch cache after the fetch phase: ${describeCache(after)}\n`)
      }
      if (r.aborted) throw cancelled(request)
      if (r.stopped !== null) {
        log.push(`quorate: ${phase} phase stopped: ${r.stopped}\n`)
        return await fail(r.stopped, null, false)
      }
      if (r.timedOut) {
        log.push(`quorate: ${phase} phase timed out; every process of the build was killed\n`)
        return await fail(`the build did not finish within ${limits.timeoutSeconds} s (the recipe's timeoutSeconds); every process of the build was killed`, null, true)
      }
      log.push(`quorate: ${phase} phase exited with status ${r.exitStatus}\n`)
      if (r.exitStatus !== 0) {
        // Within its quota, a build fails on a full disk only when something else filled it.
        if (await diskNearlyFull(request.workDir) && await diskUsage(request.workDir) - diskBaseline <= limits.maxOutputBytes) throw nodeTrouble(Object.assign(new Error('ENOSPC'), { code: 'ENOSPC' }), step)
        const how = r.signal !== null ? `was killed by ${r.signal} (status ${r.exitStatus})` : `exited with status ${r.exitStatus}`
        // 153 = 128 + SIGXFSZ: a file reached RLIMIT_FSIZE (= maxOutputBytes).
        const why = r.exitStatus === 128 + osConstants.signals.SIGXFSZ
          ? `; status ${r.exitStatus} means a file reached the limit of ${limits.maxOutputBytes} bytes (the recipe's maxOutputBytes)`
          : ''
        return await fail(`the ${phase} command ${JSON.stringify(argv)} ${how}${why}; see the end of the build log`, r.exitStatus, false)
      }
    }

    step = 'hashing and keeping the output'
    request.onProgress?.(imageSpec !== undefined ? 'pack' : 'hash', { output: recipe.output })
    t = performance.now()
    const checkoutRoot = bwrap !== null ? SANDBOX_SRC : src
    const resolved = await resolveOutput(src, recipe.output, checkoutRoot)
    if ('reason' in resolved) return await fail(resolved.reason, 0, false)
    let hashed = resolved.path
    let images: BuildSuccess['images']
    if (imageSpec !== undefined) {
      const packed = await packImage(imageSpec, { request, src, checkoutRoot, sourceDir: resolved.path, sourceDateEpoch })
      if ('reason' in packed) return await fail(packed.reason, 0, false)
      durationsMs.pack = performance.now() - t
      request.onProgress?.('hash', { output: recipe.output })
      t = performance.now()
      hashed = packed.layoutDir
      images = [{ name: packed.refName, sha256: packed.manifestDigest.slice('sha256:'.length) }]
    }
    let output: OutputDigest
    try {
      output = await hashOutput(hashed, { maxBytes: limits.maxOutputBytes, copyTo: request.outputCopyDir, fileListTo: request.fileListPath })
    } catch (err) {
      if (isQuorateError(err, 'OUTPUT_INVALID')) {
        // Paths relative to the checkout read the same on every node.
        return await fail(`the output is invalid: ${err.message.split(`${src}/`).join('')}`, 0, false)
      }
      if (request.outputCopyDir !== undefined) await removeTree(request.outputCopyDir)
      throw err
    }
    durationsMs.hash = performance.now() - t
    return {
      ok: true,
      output,
      ...(images !== undefined ? { images } : {}),
      log: log.result(),
      startedOn,
      finishedOn: new Date().toISOString(),
      durationsMs,
      fingerprint: await fingerprint()
    }
  } catch (err) {
    if (request.outputCopyDir !== undefined) await removeTree(request.outputCopyDir).catch(() => {})
    if (request.fileListPath !== undefined) await rm(request.fileListPath, { force: true }).catch(() => {})
    if (isNodeTrouble(err)) throw nodeTrouble(err, step)
    throw err
  } finally {
    await cacheLease?.release().catch(() => {})
    await cgroup?.remove()
    if (request.keepWorkDir !== true) await removeTree(request.workDir)
  }
}

function describeCache (r: FetchCacheReport): string {
  const dropped = [r.rejected > 0 ? `${r.rejected} damaged or foreign entries removed` : '', r.evicted > 0 ? `${r.evicted} oldest entries evicted to stay within maxBytes` : ''].filter(x => x !== '')
  return `${r.entries} entries, ${r.bytes} bytes${dropped.length > 0 ? `; ${dropped.join(', ')}` : ''}; checked in ${r.ms} ms`
}

/**
 * Packs the build's output directory into an OCI image layout in the work dir, in the
 * builder's own code after the sandbox is gone; a problem of the output or of the recipe's
 * base image is a build failure (the same on every node).
 */
async function packImage (spec: OciImageSpec, o: { request: BuildRequest, src: string, checkoutRoot: string, sourceDir: string, sourceDateEpoch: number }):
Promise<{ layoutDir: string, refName: string, manifestDigest: string } | { reason: string }> {
  const st = await lstat(o.sourceDir)
  if (!st.isDirectory()) return { reason: `the recipe's output path ${o.request.recipe.output} is not a directory; an OCI image ("outputKind": "oci") is packed from a directory` }
  let base: { layoutDir: string, digest: string } | undefined
  if (spec.base !== undefined) {
    const where = await resolveOutput(o.src, spec.base.layout, o.checkoutRoot)
    if ('reason' in where) {
      return { reason: `the base image layout ${spec.base.layout} (recipe.image.base.layout) was not found in the checkout: fetch it in the fetch phase, e.g. skopeo copy docker://IMAGE@${spec.base.digest} oci:${spec.base.layout}` }
    }
    base = { layoutDir: where.path, digest: spec.base.digest }
  }
  const layoutDir = join(o.request.workDir, 'oci-image')
  const refName = spec.refName ?? `${o.request.repoId}:${o.request.commit}`
  try {
    const packed = await packOciImage({
      sourceDir: o.sourceDir,
      layoutDir,
      image: { config: spec.config, refName, base, architecture: spec.architecture },
      sourceDateEpoch: o.sourceDateEpoch
    })
    return { layoutDir, refName, manifestDigest: packed.manifestDigest }
  } catch (err) {
    if (isQuorateError(err, 'OUTPUT_INVALID') || isQuorateError(err, 'RECIPE_INVALID')) {
      return { reason: `the OCI image could not be packed: ${err.message.split(`${o.src}/`).join('')}` }
    }
    throw err
  }
}

/** Without the sandbox, inherited descriptors are still closed where bash is there to do it. */
async function closerPrefix (): Promise<string[]> {
  const bash = await findOnPath('bash', `${process.env.PATH ?? BUILD_PATH}:/bin`)
  return bash === null ? [] : [bash, '-c', CLOSE_INHERITED_FDS, 'quorate-build']
}

/** Writes its own pid into each cgroup.procs file given before `--`, then becomes the rest. */
const ENROL = 'for f; do [ "$f" = -- ] && break; echo $$ > "$f" || exit 125; shift; done; shift; exec "$@"'

/** Filesystem blocks beyond maxOutputBytes the work-directory watchdog allows for metadata (directories, extent trees). */
const METADATA_ALLOWANCE_BYTES = 1024 * 1024

/** How often the watchdog looks at the build's processes, memory and disk use (at least). */
const WATCH_INTERVAL_MS = 250

interface PhaseResult {
  exitStatus: number | null
  signal: NodeJS.Signals | null
  timedOut: boolean
  aborted: boolean
  /** Why the watchdog stopped the phase (a limit was reached), else null. */
  stopped: string | null
}

/**
 * Runs one phase in its own process group (under bwrap, bwrap leads it and the sandbox's pid
 * namespace dies with it). On timeout or abort, and again when the command exits, the whole
 * group is killed, so no background process outlives the phase.
 */
async function runPhase (argv: string[], o: {
  cwd: string
  env: Record<string, string>
  deadline: number
  log: LogCapture
  signal?: AbortSignal
  cgroup: BuildCgroup | null
  /** Polled while the phase runs; a reason stops the build. */
  watch: () => Promise<string | null>
  /** Checked once more after the phase exited (a limit reached just before it ended). */
  limitHit: () => Promise<string | null>
}): Promise<PhaseResult> {
  const child = spawn(argv[0], argv.slice(1), { cwd: o.cwd, env: o.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
  let timedOut = false
  let aborted = false
  let stopped: string | null = null
  let exited = false
  const killAll = (): void => {
    killGroup(child)
    void o.cgroup?.kill()
  }
  const closed = Promise.all([streamEnd(child.stdout), streamEnd(child.stderr)])
  child.stdout.on('data', (chunk: Buffer) => o.log.push(chunk))
  child.stderr.on('data', (chunk: Buffer) => o.log.push(chunk))
  const timer = setTimeout(() => { timedOut = true; killAll() }, Math.max(0, o.deadline - Date.now()))
  const onAbort = (): void => { aborted = true; killAll() }
  // The watchdog: at least every WATCH_INTERVAL_MS, and never more than a fifth of the time
  // (walking a large work dir takes a while).
  let watchTimer: NodeJS.Timeout | undefined
  const poll = async (): Promise<void> => {
    const t = performance.now()
    const reason = await o.watch().catch(() => null)
    if (exited || timedOut || aborted) return
    if (reason !== null) {
      stopped = reason
      killAll()
      return
    }
    watchTimer = setTimeout(() => { void poll() }, Math.max(WATCH_INTERVAL_MS, 4 * (performance.now() - t)))
  }
  watchTimer = setTimeout(() => { void poll() }, WATCH_INTERVAL_MS)
  if (o.signal?.aborted === true) onAbort()
  o.signal?.addEventListener('abort', onAbort, { once: true })
  try {
    const { code, signal } = await new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve, reject) => {
      child.once('error', reject)
      child.once('exit', (code, signal) => resolve({ code, signal }))
    })
    exited = true
    killGroup(child)
    // Processes that left the process group (setsid without the sandbox) are still in the cgroup.
    await o.cgroup?.kill()
    if (stopped === null && !timedOut && !aborted) stopped = await o.limitHit().catch(() => null)
    const grace = new Promise(resolve => setTimeout(resolve, PIPE_GRACE_MS).unref())
    if (await Promise.race([closed.then(() => true), grace.then(() => false)]) === false) {
      // Only a process that left the group (setsid, without the sandbox) still holds the pipes.
      child.stdout.destroy()
      child.stderr.destroy()
    }
    const exitStatus = timedOut || aborted || stopped !== null
      ? null
      : code ?? (signal !== null ? 128 + (osConstants.signals[signal] ?? 0) : null)
    return { exitStatus, signal, timedOut, aborted, stopped }
  } finally {
    exited = true
    clearTimeout(timer)
    clearTimeout(watchTimer)
    o.signal?.removeEventListener('abort', onAbort)
  }
}

async function streamEnd (stream: NodeJS.ReadableStream): Promise<void> {
  await new Promise<void>(resolve => {
    stream.once('close', () => resolve())
    stream.once('error', () => resolve())
  })
}

/**
 * The shell wrapper every phase runs through: stderr merged into stdout (one ordered log),
 * umask 022, and per-process limits on data memory (RLIMIT_DATA), file size (RLIMIT_FSIZE),
 * core dumps and, without a cgroup, processes (RLIMIT_NPROC; with a cgroup, its pids.max is
 * the limit, and one that is reached can be seen and reported).
 */
async function limitsWrapper (limits: RecipeLimits, nproc: boolean, root?: string): Promise<string> {
  const prefix = 'exec 2>&1; umask 022; '
  // Under a build root, prlimit must be the root's (the host's is not visible there).
  const prlimit = root !== undefined
    ? (await Promise.all(['usr/bin/prlimit', 'bin/prlimit'].map(async p => await lstat(join(root, p)).then(() => true, () => false)))).includes(true)
    : await findOnPath('prlimit', BUILD_PATH) !== null
  if (prlimit) {
    return `${prefix}exec prlimit --data=${limits.memoryBytes}${nproc ? ` --nproc=${limits.maxProcesses}` : ''} --fsize=${limits.maxOutputBytes} --core=0 -- "$@"`
  }
  // Without util-linux's prlimit, the shell can still bound memory (KiB) and file size (512-byte blocks in dash).
  return `${prefix}ulimit -c 0; ulimit -d ${Math.max(1, Math.floor(limits.memoryBytes / 1024))}; ulimit -f ${Math.max(1, Math.floor(limits.maxOutputBytes / 512))}; exec "$@"`
}

/**
 * The host path of the recipe's output, following symlinks as the build saw them (an absolute
 * target under `checkoutRoot`, which is /build/src in the sandbox, stays in the checkout);
 * anything that leaves the checkout is refused.
 */
async function resolveOutput (src: string, output: string, checkoutRoot: string): Promise<{ path: string } | { reason: string }> {
  const notProduced = { reason: `the recipe's output path ${output} was not produced; check the recipe's "output" and that the build writes there` }
  const outside = (where: string): { reason: string } => ({
    reason: `the recipe's output path ${output} leads outside the checkout (through a symlink to ${where}); the output must be inside the checkout`
  })
  const split = (p: string): string[] => p.split('/').filter(c => c.length > 0 && c !== '.')
  let rest = split(output)
  const at: string[] = []
  let hops = 0
  while (rest.length > 0) {
    const name = rest.shift() as string
    if (name === '..') {
      if (at.length === 0) return outside('..')
      at.pop()
      continue
    }
    const host = join(src, ...at, name)
    let st
    try {
      st = await lstat(host)
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'ENOENT' || code === 'ENOTDIR') return notProduced
      throw err
    }
    if (!st.isSymbolicLink()) {
      at.push(name)
      continue
    }
    if (++hops > 40) return { reason: `the recipe's output path ${output} has a symlink loop` }
    const target = await readlink(host)
    if (target.startsWith('/')) {
      const roots = [...new Set([checkoutRoot, src])]
      const root = roots.find(r => target === r || target.startsWith(`${r}/`))
      if (root === undefined) return outside(target)
      at.length = 0
      rest = [...split(target.slice(root.length)), ...rest]
    } else {
      rest = [...split(target), ...rest]
    }
  }
  return { path: join(src, ...at) }
}

async function prepareWorkDir (dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o755 })
  await chmod(dir, 0o755)
  if ((await readdir(dir)).length > 0) {
    throw new QuorateError('USAGE', `the build's work directory ${dir} is not empty; give each build a new or empty directory`, { workDir: dir })
  }
}

function checkNotAborted (request: BuildRequest): void {
  if (request.signal?.aborted === true) throw cancelled(request)
}

function cancelled (request: BuildRequest): QuorateError {
  return new QuorateError('BUILD_FAILED',
    `the build of ${request.repoId}@${request.commit} was cancelled before it finished; nothing was attested, and it can be queued again`,
    { aborted: true, repoId: request.repoId, commit: request.commit }, { cause: request.signal?.reason })
}

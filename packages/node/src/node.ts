import { existsSync, readdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { QuorateError, makeRefObservationStatement, rootRegistriesOf, type BuilderKeyPair, type LogPosition, type Policy } from '@quorate/core'
import { Store } from '@quorate/store'
import { BuildRootCache, FetchCache, GitMirror, prepareBuildArea, watcher, buildWorker, type Watcher, type BuildWorker, type GitCommitSummary } from '@quorate/builder'
import { startNetwork, type Network } from '@quorate/network'
import { loadBuilderKey, loadPolicyFile, type NodeConfig } from './config.js'
import { loadPeerKey, writePeerKeyFile } from './peer-key-file.js'
import { preflight } from './preflight.js'
import { dataDirLayout, prepareDataDir } from './data-dir.js'
import { EventBus } from './events.js'
import type { Logger } from './logger.js'
import { httpApi, type HttpApi } from './http-api.js'
import type { RootProblemStatus } from './api-routes.js'
import { createNodeMetrics, collectNetworkMetrics, collectIndexBudgetMetrics, type NodeMetrics } from './metrics.js'
import { mirrorMoves as loadMirrorMoves } from './commit-views.js'
import type { CommitsNotIndexed } from './api-routes.js'
import { createNotifier, noticeMemory } from './notifier.js'
import { ownLog } from './own-log.js'
import { ownLogRecovery } from './own-log-recovery.js'
import { ownPreviousTip } from './ref-views.js'
import { publisher, type Publisher } from './publisher.js'
import { ingest, type IngestStats } from './ingest.js'
import { createVerifyPool } from './verify-pool.js'
import { decisions as createDecisions, type Decisions } from './decisions.js'
import { outputs as createOutputs } from './outputs.js'
import { buildJobs } from './build-jobs.js'
import { runRetention } from './retention.js'

export interface NodeStats extends IngestStats {
  buildsSucceeded: number
  buildsFailed: number
}

/** A running Quorate node: the parts wired together (see the package README for what each does). */
export interface QuorateNode {
  readonly config: NodeConfig
  readonly policy: Policy
  readonly key: BuilderKeyPair
  readonly store: Store
  readonly network: Network
  readonly events: EventBus
  readonly stats: NodeStats
  readonly metrics: NodeMetrics
  readonly decisions: Decisions
  readonly watcher: Watcher
  readonly buildWorker: BuildWorker
  readonly publisher: Publisher
  readonly httpUrl: string
  /** Builder name in the policy, or undefined when this node's key is not a member. */
  readonly builderName: string | undefined
  stop: () => Promise<void>
}

const BUILD_ID_BASE = 'https://quorate.dev/builders/'

/**
 * Starts a node: creates its parts, starts them in dependency order (store, decisions, network,
 * publisher, build worker, watcher, HTTP API) and stops them in reverse.
 */
export async function startNode (config: NodeConfig, logger: Logger): Promise<QuorateNode> {
  const policy = loadPolicyFile(config.policyFile)
  const key = loadBuilderKey(config.builderKeyFile)
  const buildUser = await preflight(config, policy, key, logger)
  const member = policy.keys.get(key.keyid)
  const builderName = member?.builder
  const builderId = `${BUILD_ID_BASE}${encodeURIComponent(member?.org ?? 'unknown')}/${encodeURIComponent(builderName ?? key.keyid)}`

  const dir = dataDirLayout(config.dataDir)
  prepareDataDir(dir)
  const buildArea = await prepareBuildArea({
    user: config.sandbox === 'bwrap' ? buildUser : { ...buildUser, drop: false },
    dataDir: config.dataDir,
    defaultDir: dir.work,
    preferred: config.buildDir
  })
  // Work dirs a killed process left behind (the build area itself stays: the build user must reach it).
  for (const name of readdirSync(buildArea)) rmSync(join(buildArea, name), { recursive: true, force: true })
  // Build roots (recipe.root): pulled only from the policy's registries and those the config adds.
  // A root node keeps them beside its build area, where the build user can reach them, and unpacks as uid 50998.
  const dropping = config.sandbox === 'bwrap' && buildUser.drop
  const rootCache = new BuildRootCache({
    // Made on first use; the cache checks it is its own and not writable by others.
    dir: config.roots.cacheDir ?? (dropping ? `${buildArea}-roots` : join(config.dataDir, 'roots')),
    allowedRegistries: () => [...new Set([...rootRegistriesOf(policy), ...config.roots.allowRegistries])],
    registries: config.roots.registries,
    layouts: config.roots.layouts,
    ...(config.roots.maxBytes !== undefined ? { maxBytes: config.roots.maxBytes } : {}),
    ...(config.roots.maxImageBytes !== undefined ? { maxImageBytes: config.roots.maxImageBytes } : {}),
    ...(config.roots.maxUnpackedBytes !== undefined ? { maxUnpackedBytes: config.roots.maxUnpackedBytes } : {}),
    ...(dropping ? { unpackUser: { uid: ROOT_UNPACK_ID, gid: ROOT_UNPACK_ID } } : {})
  })
  // npm's cache between fetch phases (opt-in, README "Fetch cache"): beside the build area for a
  // root node (the build user must reach it), else in the data directory.
  const fetchCache = config.fetchCache === undefined || config.sandbox !== 'bwrap'
    ? undefined
    : new FetchCache({
      dir: config.fetchCache.dir ?? (dropping ? `${buildArea}-fetch-cache` : join(config.dataDir, 'fetch-cache')),
      user: buildUser,
      maxBytes: config.fetchCache.maxBytes,
      maxAgeDays: config.fetchCache.maxAgeDays
    })
  const peerKey = existsSync(config.peerKeyFile) ? loadPeerKey(config.peerKeyFile) : await writePeerKeyFile(config.peerKeyFile)
  // Per signer and repository, a budget of commits new to the index (config commitIndexBudget,
  // default 100,000 then 10,000 an hour): a member key flooding ref observations of invented
  // commits cannot grow the commit indexes without bound (its envelopes are still stored; issue 14 item 5).
  const store = await Store.open(dir.db, { blobsDir: dir.blobs, commitIndexBudget: config.commitIndexBudget })
  const stops: Array<() => Promise<void>> = [async () => await store.close()]
  async function stopAll (): Promise<void> {
    for (const stop of stops.splice(0).reverse()) await stop().catch(err => logger.error('stop failed', { error: (err as Error).message }))
  }

  try {
    // Event ids start from the clock, so they keep growing across restarts (`?since=`, Last-Event-ID).
    const events = new EventBus(1000, Date.now() * 1000)
    const metrics = createNodeMetrics()
    const notify = createNotifier(config, logger)
    const stats: NodeStats = { buildsSucceeded: 0, buildsFailed: 0, received: { accept: 0, reject: 0, ignore: 0 }, rejectReasons: {} }

    const privateRepos = new Set(config.private)
    for (const id of privateRepos) if (!policy.repositories.has(id)) logger.warn('private repository not in the policy', { repo: id })
    let network: Network | undefined
    const outputs = createOutputs({
      store,
      network: { fetchBlob: async (sha256, o) => await network?.fetchBlob(sha256, o), fetchBlobFile: async (sha256, path, o) => await network?.fetchBlobFile(sha256, path, o) },
      maxFileListBytes: config.maxFileListBytes,
      logger,
      privateRepos
    })
    const decisions = createDecisions({ decisionCacheBytes: config.decisionCache.decisionMiB * 1024 * 1024, answerCacheBytes: config.decisionCache.answerMiB * 1024 * 1024 }, { store, policy, events, logger, notify, memory: noticeMemory(store), metrics })
    decisions.start()
    stops.push(decisions.stop)
    // Incoming signatures are verified on worker threads while this thread parses and stores
    // (config verifyWorkers; 0: here). Stopped after the network, which is stopped first.
    const verifier = createVerifyPool({ workers: config.verifyWorkers, onCrash: error => logger.warn('verify worker died; replaced', { error }) })
    stops.push(verifier.close)
    const validator = ingest({}, { store, policy, decisions, events, metrics, notify, logger, stats, verifier })

    network = await startNetwork({
      peerKey,
      listen: config.listen,
      announce: config.announce,
      bootstrap: config.bootstrap,
      loopbackNetwork: config.loopbackNetwork,
      repoIds: [...policy.repositories.keys()],
      validate: validator.validate,
      sync: { heads: async () => await store.logHeads(), envelopesAfter: (r, k, s) => store.envelopesAfter(r, k, s) },
      // File lists and complete build logs, by content address; never a private repository's.
      blobs: { open: async (sha256) => await outputs.openPublicBlob(sha256) },
      maxBlobBytes: config.maxFileListBytes,
      mdns: config.mdns,
      log: (event, fields) => { if (/connect|ban|graylist/.test(event)) logger.info(`network ${event}`, fields); else logger.debug(`network ${event}`, fields) }
    })
    const net = network
    stops.push(async () => await net.stop())
    logger.info('network started', { peerId: network.peerId, addrs: network.multiaddrs().join(' ') })
    collectNetworkMetrics(metrics.registry, network)
    const commitsNotIndexed = (): CommitsNotIndexed[] => store.commitsNotIndexedBy().map(x => ({ ...x, builder: policy.keys.get(x.keyid)?.builder ?? null }))
    collectIndexBudgetMetrics(metrics.registry, commitsNotIndexed)

    // Own envelopes: signed into the own log (persisted with fsync), announced, then published.
    // Nothing is signed before this data directory holds the key's logs (fetched back from peers
    // after a data-directory loss): DESIGN.md "A node never forks its own log".
    const recovery = ownLogRecovery({ dataDir: config.dataDir, keyIsNew: config.keyIsNew }, { policy, keyid: key.keyid, store, decisions, events, logger })
    let stopSigning!: () => void
    const signingStopped = new Promise<void>(resolve => { stopSigning = resolve })
    stops.push(async () => { stopSigning(); await recovery.stop() })
    /** Resolves when this node may sign, or when it stops (then signing throws). */
    const ownLogReady = async (): Promise<void> => { await Promise.race([recovery.ready(), signingStopped]) }
    const log = ownLog({ store, key, policy })
    const publish = publisher({}, { network, metrics, logger })
    stops.push(async () => { await log.idle(); await publish.stop() })
    async function sign (repoId: string, make: (log: LogPosition) => Record<string, unknown>): Promise<string> {
      await ownLogReady()
      if (recovery.status().state !== 'ready') throw new QuorateError('STORE_FAILED', 'the node is stopping before its own log was recovered: nothing signed')
      const own = await log.append(repoId, make)
      if (config.faultInjection?.crashAfterPersist === true && own.verified?.attestation.kind === 'build') {
        logger.warn('fault injection: crashing between persist and publish', { envelopeId: own.id })
        process.kill(process.pid, 'SIGKILL')
      }
      if (own.verified !== undefined) {
        events.emit({ type: 'attestation', repoId, commit: own.verified.attestation.commit, envelopeId: own.id, builder: own.verified.builder, kind: own.verified.attestation.kind, via: 'self' })
        decisions.envelopeAdded(own.verified)
      } else {
        logger.warn('own attestation not counted', { reason: own.reason })
      }
      publish.publish(own)
      return own.id
    }
    // Republish what we signed most recently (gossip is lossy; sync covers the rest).
    for (const repoId of policy.repositories.keys()) for (const own of await log.recent(repoId, 50)) publish.publish(own)

    // Repository ids with the same URL share one mirror (one clone, one fetch at a time).
    const mirrors = new Map<string, GitMirror>()
    const byUrl = new Map<string, GitMirror>()
    for (const repo of policy.repositories.values()) {
      let mirror = byUrl.get(repo.url)
      if (mirror === undefined) {
        mirror = new GitMirror({ url: repo.url, dir: dir.gitMirror(repo.id), credentials: config.credentials[repo.id] })
        byUrl.set(repo.url, mirror)
      } else {
        logger.info('repositories share a mirror', { repo: repo.id, mirror: mirror.dir })
      }
      mirrors.set(repo.id, mirror)
    }
    const mirrorOf = (repoId: string): GitMirror => mirrors.get(repoId)!
    const mirrorSeen = await loadMirrorMoves(store, [...policy.repositories.keys()])
    stops.push(async () => { for (const m of byUrl.values()) m.close() })
    await outputs.adoptLegacyFiles(dir.legacyFiles)
    const jobs = buildJobs(
      { sandbox: config.sandbox, buildArea, workDir: dir.work, user: buildUser, fetchNetwork: config.fetchNetwork, rootCache, ...(fetchCache !== undefined ? { fetchCache } : {}), builderId, tamperOutput: config.faultInjection?.tamperOutput, buildAttempts: config.buildAttempts, retryBackoffMs: config.retryBackoffSeconds * 1000, progressIntervalMs: config.progressIntervalSeconds * 1000 },
      { policy, keyid: key.keyid, mirrorOf, store, queue: store, requeued: () => worker.kick(), sign, ownLogReady, republish: item => publish.publish(item), outputs, metrics, stats, events, logger }
    )
    const worker = buildWorker({ concurrency: config.concurrency }, {
      queue: store,
      run: jobs.run,
      log: (level, event, fields) => logger.log(level, event, fields)
    })
    const watch = watcher({
      repositories: [...policy.repositories.values()].map(r => ({ id: r.id, branches: r.branches, tags: r.tags, recipeKey: r.recipeDigest ?? 'repo' })),
      backfill: config.backfill,
      pollIntervalMs: config.pollIntervalSeconds * 1000
    }, {
      mirrorOf,
      queue: store,
      refs: store,
      onRefMoved: async (move) => {
        // What the node's own mirror saw, kept for the commits list (issue 14 item 5): an observer
        // signs nothing, yet lists what its mirror has before a quorum observed it.
        const seen = await mirrorOf(move.repoId).refMove(move.commit, move.previous)
        await mirrorSeen.record(move.repoId, { ref: move.ref, commit: move.commit, previous: move.previous, ...seen })
        events.emit({ type: 'ref', repoId: move.repoId, ref: move.ref, commit: move.commit, previous: move.previous, via: 'mirror' })
        if (member === undefined) return
        // `previous` is the tip this key last signed for the ref (its own log, recovered if need
        // be), not what the watcher remembers; the commits in between come from git.
        await ownLogReady()
        const previous = await ownPreviousTip(store, move.repoId, move.ref, key.keyid)
        if (previous === move.commit) return
        const facts = previous === move.previous ? seen : await mirrorOf(move.repoId).refMove(move.commit, previous)
        await sign(move.repoId, position => makeRefObservationStatement({
          repoId: move.repoId, ref: move.ref, commit: move.commit, previous, fastForward: facts.fastForward, introduced: facts.introduced, truncated: facts.truncated,
          builderId, observedOn: new Date().toISOString(), log: position
        }))
      },
      onQueued: () => worker.kick(),
      log: (level, event, fields) => logger.log(level, event, fields),
      progressIntervalMs: config.progressIntervalSeconds * 1000
    })
    stops.push(async () => await worker.stop(), async () => await watch.stop())

    // Catch-up sync can take long on a new data directory: say how far it got while envelopes keep arriving.
    let lastSync = { received: net.stats().syncReceived, at: Date.now() }
    const syncTimer = setInterval(() => {
      const s = net.stats()
      if (s.syncReceived > lastSync.received) {
        logger.info('sync catching up', { received: s.syncReceived - lastSync.received, accepted: s.syncAccepted, seconds: Math.round((Date.now() - lastSync.at) / 1000), peers: net.connectedPeers().length })
      }
      lastSync = { received: s.syncReceived, at: Date.now() }
    }, config.progressIntervalSeconds * 1000)
    syncTimer.unref()
    stops.push(async () => { clearInterval(syncTimer) })

    // Retention: outputs, logs and cached roots by age, count and size (README "Retention").
    let retaining: Promise<unknown> = Promise.resolve()
    const retain = (): void => {
      retaining = retaining.then(async () => await runRetention(config.retention, { store, decision: decisions.decision, roots: rootCache, logger }))
        .catch(err => logger.error('retention failed', { error: (err as Error).message }))
    }
    const retentionTimer = setInterval(retain, config.retention.intervalMinutes * 60_000)
    retentionTimer.unref()
    const firstRetention = setTimeout(retain, 60_000)
    firstRetention.unref()
    stops.push(async () => { clearInterval(retentionTimer); clearTimeout(firstRetention); await retaining })

    let queueCounts: Record<string, number> = await store.jobCounts()
    const queueTimer = setInterval(() => { void store.jobCounts().then(q => { queueCounts = q }).catch(() => {}) }, 5000)
    stops.push(async () => { clearInterval(queueTimer) })
    metrics.registry.collect('quorate_build_queue', 'Build jobs by state.', 'gauge', () => Object.entries(queueCounts).map(([state, n]) => [{ state }, n]))

    // Commit metadata never changes: read each commit from the mirror once (bounded cache).
    // Commits the mirror lacks are not asked again until a poll has fetched the mirrors since
    // (each ask is a git process: a lookup of a commit the mirror lacks spawned one every time).
    const gitCache = new Map<string, GitCommitSummary>()
    const gitLacks = new Map<string, number>()
    async function gitSummaries (repoId: string, commits: string[]): Promise<Map<string, GitCommitSummary>> {
      const out = new Map<string, GitCommitSummary>()
      const polls = watch.polls()
      const missing = commits.filter(x => {
        const k = `${repoId}@${x}`
        const hit = gitCache.get(k)
        if (hit !== undefined) out.set(x, hit)
        return hit === undefined && gitLacks.get(k) !== polls
      })
      if (missing.length === 0) return out
      const mirror = mirrors.get(repoId)
      if (mirror === undefined) return out
      const found = await mirror.commitSummaries(missing)
      for (const [sha, info] of found) {
        out.set(sha, info)
        gitCache.set(`${repoId}@${sha}`, info)
        if (gitCache.size > 20_000) gitCache.delete(gitCache.keys().next().value as string)
      }
      for (const x of missing) {
        if (found.has(x)) continue
        gitLacks.set(`${repoId}@${x}`, polls)
        if (gitLacks.size > 100_000) gitLacks.delete(gitLacks.keys().next().value as string)
      }
      return out
    }

    const http: HttpApi = await httpApi({
      host: config.http.host,
      port: config.http.port,
      configFile: config.file,
      adminToken: config.adminToken,
      readToken: config.readToken,
      webhookSecret: config.webhookSecret
    }, {
      policy,
      decisions,
      store,
      ownKeyid: key.keyid,
      mirror: mirrorSeen,
      outputs,
      network,
      events,
      metrics,
      status: async () => ({ name: config.name, builder: builderName ?? null, keyid: key.keyid, publicKey: key.publicKeyHex, sandbox: config.sandbox, queue: await store.jobCounts(), stats: { ...stats, polls: watch.polls(), buildsRunning: worker.running() }, ownLog: recovery.status(), rootProblems: rootProblems(rootCache), nodeProblems: jobs.nodeProblems(), running: jobs.running(), problems: watch.problems(), commitsNotIndexed: commitsNotIndexed() }),
      poll: async (repoId) => await watch.pollNow(repoId),
      ...(member !== undefined ? { requestRebuild: jobs.requestRebuild } : {}),
      gitInfo: async (repoId, commits) => await gitSummaries(repoId, commits),
      logger
    })
    stops.push(async () => await http.close())
    // Stopping runs in reverse: release whatever waits to sign first, so the watcher and the
    // build worker can finish while the own log is still being recovered.
    stops.push(async () => { stopSigning() })

    publish.start()
    await recovery.start()
    if (member !== undefined) await worker.start()
    watch.start()
    logger.info('node started', {
      builder: builderName ?? '(not in policy)',
      keyid: key.keyid,
      http: http.url,
      repos: [...policy.repositories.keys()].join(','),
      sandbox: config.sandbox,
      pollSeconds: config.pollIntervalSeconds
    })

    let stopped: Promise<void> | undefined
    return {
      config,
      policy,
      key,
      store,
      network,
      events,
      stats,
      metrics,
      decisions,
      watcher: watch,
      buildWorker: worker,
      publisher: publish,
      builderName,
      httpUrl: http.url,
      stop: async () => {
        stopped ??= stopAll().then(() => logger.info('stopped', {}))
        await stopped
      }
    }
  } catch (err) {
    await stopAll()
    throw err
  }
}

/** The host uid/gid a root node unpacks build roots as (neither the build user's nor root). */
const ROOT_UNPACK_ID = 50998

/** Build roots the node could not pull or verify, with what the registry answered (jobs wait and retry). */
function rootProblems (cache: BuildRootCache): RootProblemStatus[] {
  return [...cache.problems].map(([image, p]) => ({ image, problem: p.message, at: new Date(p.at).toISOString() }))
}

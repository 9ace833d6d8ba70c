import { existsSync, readdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { makeRefObservationStatement, type BuilderKeyPair, type LogPosition, type Policy } from '@quorate/core'
import { Store } from '@quorate/store'
import { GitMirror, prepareBuildArea, watcher, buildWorker, type Watcher, type BuildWorker } from '@quorate/builder'
import { startNetwork, type Network } from '@quorate/network'
import { loadBuilderKey, loadPolicyFile, type NodeConfig } from './config.js'
import { loadPeerKey, writePeerKeyFile } from './peer-key-file.js'
import { preflight } from './preflight.js'
import { dataDirLayout, prepareDataDir } from './data-dir.js'
import { EventBus } from './events.js'
import type { Logger } from './logger.js'
import { httpApi, type HttpApi } from './http-api.js'
import { createNodeMetrics, collectNetworkMetrics, type NodeMetrics } from './metrics.js'
import { createNotifier } from './notifier.js'
import { ownLog } from './own-log.js'
import { publisher, type Publisher } from './publisher.js'
import { ingest, type IngestStats } from './ingest.js'
import { decisions as createDecisions, type Decisions } from './decisions.js'
import { outputs as createOutputs } from './outputs.js'
import { buildJobs } from './build-jobs.js'

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
  const peerKey = existsSync(config.peerKeyFile) ? loadPeerKey(config.peerKeyFile) : await writePeerKeyFile(config.peerKeyFile)
  const store = await Store.open(dir.db, { blobsDir: dir.blobs })
  const stops: Array<() => Promise<void>> = [async () => await store.close()]
  async function stopAll (): Promise<void> {
    for (const stop of stops.splice(0).reverse()) await stop().catch(err => logger.error('stop failed', { error: (err as Error).message }))
  }

  try {
    const events = new EventBus()
    const metrics = createNodeMetrics()
    const notify = createNotifier(config, logger)
    const stats: NodeStats = { buildsSucceeded: 0, buildsFailed: 0, received: { accept: 0, reject: 0, ignore: 0 }, rejectReasons: {} }

    const decisions = createDecisions({}, { store, policy, events, logger, notify, metrics })
    decisions.start()
    stops.push(decisions.stop)
    const validator = ingest({}, { store, policy, decisions, events, metrics, notify, logger, stats })

    const network = await startNetwork({
      peerKey,
      listen: config.listen,
      announce: config.announce,
      bootstrap: config.bootstrap,
      loopbackNetwork: config.loopbackNetwork,
      repoIds: [...policy.repositories.keys()],
      validate: validator.validate,
      sync: { heads: async () => await store.logHeads(), envelopesAfter: (r, k, s) => store.envelopesAfter(r, k, s) },
      blobs: { get: async (sha256) => await store.getBlob(sha256) },
      mdns: config.mdns,
      log: (event, fields) => { if (/connect|ban|graylist/.test(event)) logger.info(`network ${event}`, fields); else logger.debug(`network ${event}`, fields) }
    })
    stops.push(async () => await network.stop())
    logger.info('network started', { peerId: network.peerId, addrs: network.multiaddrs().join(' ') })
    collectNetworkMetrics(metrics.registry, network)

    // Own envelopes: signed into the own log (persisted with fsync), announced, then published.
    const log = ownLog({ store, key, policy })
    const publish = publisher({}, { network, metrics, logger })
    stops.push(async () => { await log.idle(); await publish.stop() })
    async function sign (repoId: string, make: (log: LogPosition) => Record<string, unknown>): Promise<string> {
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

    const mirrors = new Map<string, GitMirror>()
    for (const repo of policy.repositories.values()) {
      mirrors.set(repo.id, new GitMirror({ url: repo.url, dir: dir.gitMirror(repo.id), credentials: config.credentials[repo.id] }))
    }
    const mirrorOf = (repoId: string): GitMirror => mirrors.get(repoId)!
    const outputs = createOutputs({ store, network, logger })
    await outputs.adoptLegacyFiles(dir.legacyFiles)
    const jobs = buildJobs(
      { sandbox: config.sandbox, buildArea, workDir: dir.work, user: buildUser, fetchNetwork: config.fetchNetwork, builderId, tamperOutput: config.faultInjection?.tamperOutput },
      { policy, keyid: key.keyid, mirrorOf, store, queue: store, sign, republish: item => publish.publish(item), outputs, metrics, stats, events, logger }
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
        if (member === undefined) return
        await sign(move.repoId, position => makeRefObservationStatement({ repoId: move.repoId, ref: move.ref, commit: move.commit, builderId, observedOn: new Date().toISOString(), log: position }))
      },
      onQueued: () => worker.kick(),
      log: (level, event, fields) => logger.log(level, event, fields)
    })
    stops.push(async () => await worker.stop(), async () => await watch.stop())

    let queueCounts: Record<string, number> = await store.jobCounts()
    const queueTimer = setInterval(() => { void store.jobCounts().then(q => { queueCounts = q }).catch(() => {}) }, 5000)
    stops.push(async () => { clearInterval(queueTimer) })
    metrics.registry.collect('quorate_build_queue', 'Build jobs by state.', 'gauge', () => Object.entries(queueCounts).map(([state, n]) => [{ state }, n]))

    const http: HttpApi = await httpApi({
      host: config.http.host,
      port: config.http.port,
      configFile: config.file,
      adminToken: config.adminToken,
      webhookSecret: config.webhookSecret
    }, {
      policy,
      decisions,
      store,
      outputs,
      network,
      events,
      metrics,
      status: async () => ({ name: config.name, builder: builderName ?? null, keyid: key.keyid, publicKey: key.publicKeyHex, sandbox: config.sandbox, queue: await store.jobCounts(), stats: { ...stats, polls: watch.polls(), buildsRunning: worker.running() } }),
      poll: async (repoId) => await watch.pollNow(repoId),
      logger
    })
    stops.push(async () => await http.close())

    publish.start()
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

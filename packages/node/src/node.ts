import { sandboxFailureHint } from './sandbox-hint.js'
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync, linkSync, copyFileSync, chmodSync } from 'node:fs'
import { join } from 'node:path'
import { randomUUID } from 'node:crypto'
import {
  QuorateError, checkEnvelope, decideQuorum, makeFailureStatement, makeProvenanceStatement, makeRefObservationStatement,
  signStatement, parseRecipeSpec, parseJsonStrict, sha256Hex, DEFAULT_RECIPE_LIMITS, isQuorateError, rootRegistriesOf, type BuilderKeyPair, type Decision, type LogPosition, type Policy, type RepositoryPolicy, type Recipe, type RecipeSpec
} from '@quorate/core'
import { Store, type BuildJob } from '@quorate/store'
import { BuildRootCache, GitMirror, runBuild, probeSandbox, parseImageSpec, prepareBuildArea, resolveBuildUser } from '@quorate/builder'
import { startNetwork, createPeerKey, type Network, type Verdict, type IncomingMessage } from '@quorate/network'
import { loadBuilderKey, loadPolicyFile, assertPrivateFile, type NodeConfig } from './config.js'
import { EventBus } from './events.js'
import type { Logger } from './logger.js'
import { startHttpApi, type HttpApi } from './http-api.js'
import { createNodeMetrics, type NodeMetrics } from './metrics.js'
import { createNotifier } from './notifier.js'

export interface NodeStats {
  buildsSucceeded: number
  buildsFailed: number
  received: Record<Verdict, number>
  rejectReasons: Record<string, number>
}

/** A running Quorate node: watcher, builder, store, network and HTTP API. */
export interface QuorateNode {
  readonly config: NodeConfig
  readonly policy: Policy
  readonly key: BuilderKeyPair
  readonly store: Store
  readonly network: Network
  readonly events: EventBus
  readonly stats: NodeStats
  readonly metrics: NodeMetrics
  /** Latest known decision status per "repo@commit" (for metrics and status). */
  readonly decisionStatus: Map<string, string>
  readonly httpUrl: string
  /** Builder name in the policy, or undefined when this node's key is not a member. */
  readonly builderName: string | undefined
  decide: (repoId: string, commit: string) => Promise<{ decision: Decision, envelopes: unknown[], proofs: Array<[unknown, unknown]> }>
  /** Per counted builder: whether this node holds its log complete and linked up to the attestation that counted. */
  logCompleteness: (decision: Decision) => Promise<Array<{ builder: string, keyid: string, seq: number, complete: boolean }>>
  pollNow: (repoId?: string) => Promise<void>
  queueSummary: () => Promise<Record<string, number>>
  /** Build roots: the cache, and per image the last problem pulling it (shown by /v1/status). */
  readonly rootCache: BuildRootCache
  stop: () => Promise<void>
}

const MAX_ATTEMPTS = 3
/** The host uid/gid a root node unpacks build roots as (not the build user's, not root). */
const ROOT_UNPACK_ID = 50998
/** The signed failure reason when the policy requires a build root and the commit's recipe has none. */
const REQUIRE_ROOT_REASON = 'the policy requires a pinned build root for this repository ("requireRoot": true), but .quorate/recipe.json has no "root"; add "root": {"image": "<name>@sha256:<digest>"} to the recipe'

/** Token buckets keyed by a string: `ratePerSecond` refill, `burst` capacity. */
class TokenBuckets {
  private readonly buckets = new Map<string, { tokens: number, at: number }>()
  constructor (private readonly ratePerSecond: number, private readonly burst: number) {}
  take (key: string, now = Date.now()): boolean {
    let b = this.buckets.get(key)
    if (b === undefined) {
      if (this.buckets.size > 100_000) this.buckets.clear()
      this.buckets.set(key, b = { tokens: this.burst, at: now })
    }
    b.tokens = Math.min(this.burst, b.tokens + (now - b.at) / 1000 * this.ratePerSecond)
    b.at = now
    if (b.tokens < 1) return false
    b.tokens--
    return true
  }
}
const BUILD_ID_BASE = 'https://quorate.dev/builders/'

function parseEnvelopeJson (bytes: Uint8Array): unknown {
  return JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'))
}

/** Loads (or on first start creates) the libp2p peer key, a file separate from the builder key. */
function loadPeerKey (file: string): Uint8Array {
  assertPrivateFile(file, 'libp2p peer key')
  const raw = JSON.parse(readFileSync(file, 'utf8')) as { type?: string, privateKey?: string }
  if (raw.type !== 'quorate-peer-key' || typeof raw.privateKey !== 'string') throw new QuorateError('KEY_INVALID', `${file}: not a Quorate peer key file; create one with "quorate init"`)
  return new Uint8Array(Buffer.from(raw.privateKey, 'base64'))
}

export async function writePeerKeyFile (file: string): Promise<Uint8Array> {
  const key = await createPeerKey()
  writeFileSync(file, JSON.stringify({ type: 'quorate-peer-key', privateKey: Buffer.from(key).toString('base64') }) + '\n', { mode: 0o600 })
  return key
}

/** The shell wrapper a compromised CI would use: run the real build, then slip a change into the output. */
function tamperedRecipe (recipe: Recipe): Recipe {
  const inject = `"$@" || exit $?; for f in $(find "${recipe.output}" -type f | sort); do printf '\\n/* injected by a compromised builder */\\n' >> "$f"; break; done`
  return { ...recipe, build: ['sh', '-c', inject, 'sh', ...recipe.build] }
}

export async function startNode (config: NodeConfig, logger: Logger): Promise<QuorateNode> {
  const policy = loadPolicyFile(config.policyFile)
  const key = loadBuilderKey(config.builderKeyFile)
  for (const repo of policy.repositories.values()) {
    if (repo.recipe?.recipe.image !== undefined) parseImageSpec(repo.recipe.recipe.image, `${config.policyFile}: repositories[${repo.id}].recipe.image`)
  }
  const member = policy.keys.get(key.keyid)
  if (member === undefined) {
    logger.warn('key not in policy', { keyid: key.keyid, hint: 'this node verifies and relays but its attestations will not count until the network adds its public key to the policy' })
  } else if (member.revoked) {
    throw new QuorateError('KEY_INVALID', `${config.builderKeyFile}: this key (${key.keyid}) is revoked in ${config.policyFile}; use the builder's current key`)
  }
  // A root node builds as an unprivileged user of its own (never host uid 0), in a directory that user can reach.
  const buildUser = resolveBuildUser(config.sandboxUser)
  if (config.sandbox === 'bwrap') {
    const probe = await probeSandbox(buildUser)
    if (typeof probe === 'string') {
      const hint = sandboxFailureHint(probe, existsSync('/.dockerenv') || existsSync('/run/.containerenv'))
      throw new QuorateError('SANDBOX_UNAVAILABLE', `${config.file}: sandbox is "bwrap" but ${probe}${hint !== undefined ? `; ${hint}` : ''}; or set "sandbox": "none" to build without isolation`)
    }
  } else {
    logger.warn('sandbox disabled', { sandbox: 'none', hint: 'builds run without isolation and can read this node\'s files; attestations record sandbox "none"' })
  }
  if (config.faultInjection?.tamperOutput === true) logger.warn('fault injection', { tamperOutput: true, hint: 'this node simulates a compromised CI: it alters its build outputs' })

  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 })
  const buildArea = await prepareBuildArea({
    user: config.sandbox === 'bwrap' ? buildUser : { ...buildUser, drop: false },
    dataDir: config.dataDir,
    defaultDir: join(config.dataDir, 'work'),
    preferred: config.buildDir
  })
  // Build roots (recipe.root): pulled only from the policy's registries and those the config adds.
  // A root node keeps them beside its build area, where the build user can reach them.
  const dropping = config.sandbox === 'bwrap' && buildUser.drop
  const rootCache = new BuildRootCache({
    dir: config.roots.cacheDir ?? (dropping
      ? await prepareBuildArea({ user: buildUser, dataDir: config.dataDir, defaultDir: join(config.dataDir, 'roots'), preferred: `${buildArea}-roots` })
      : join(config.dataDir, 'roots')),
    allowedRegistries: () => [...new Set([...rootRegistriesOf(policy), ...config.roots.allowRegistries])],
    registries: config.roots.registries,
    layouts: config.roots.layouts,
    ...(config.roots.maxBytes !== undefined ? { maxBytes: config.roots.maxBytes } : {}),
    ...(config.roots.maxImageBytes !== undefined ? { maxImageBytes: config.roots.maxImageBytes } : {}),
    ...(config.roots.maxUnpackedBytes !== undefined ? { maxUnpackedBytes: config.roots.maxUnpackedBytes } : {}),
    ...(dropping ? { unpackUser: { uid: ROOT_UNPACK_ID, gid: ROOT_UNPACK_ID } } : {})
  })
  const peerKey = existsSync(config.peerKeyFile) ? loadPeerKey(config.peerKeyFile) : await writePeerKeyFile(config.peerKeyFile)
  const store = await Store.open(join(config.dataDir, 'db'))
  const events = new EventBus()
  const stats: NodeStats = { buildsSucceeded: 0, buildsFailed: 0, received: { accept: 0, reject: 0, ignore: 0 }, rejectReasons: {} }
  const builderName = member?.builder
  const builderId = `${BUILD_ID_BASE}${encodeURIComponent(member?.org ?? 'unknown')}/${encodeURIComponent(builderName ?? key.keyid)}`
  const lastStatus = new Map<string, string>()
  const decisionStatus = new Map<string, string>()
  const metrics = createNodeMetrics()
  const notify = createNotifier(config, logger)
  const verifiedIds = new Set<string>()
  let stopping = false

  async function decide (repoId: string, commit: string): Promise<{ decision: Decision, envelopes: unknown[], proofs: Array<[unknown, unknown]> }> {
    const stored = await store.envelopesForCommit(repoId, commit)
    const proofsStored = await store.equivocationProofs(repoId)
    const envelopes = stored.map(s => parseEnvelopeJson(s.bytes))
    const proofs = proofsStored.map(p => [parseEnvelopeJson(p.envelopes[0]), parseEnvelopeJson(p.envelopes[1])] as [unknown, unknown])
    const decision = decideQuorum({ policy, repoId, commit, envelopes: envelopes as object[], equivocationProofs: proofs as Array<[object, object]>, verifiedIds })
    return { decision, envelopes, proofs }
  }

  async function logCompleteness (decision: Decision): Promise<Array<{ builder: string, keyid: string, seq: number, complete: boolean }>> {
    const stored = await store.envelopesForCommit(decision.repoId, decision.commit)
    const out = []
    for (const v of decision.votes) {
      const meta = stored.find(x => x.meta.id === v.envelopeId && x.meta.keyid === v.keyid)?.meta
      if (meta === undefined) continue
      out.push({ builder: v.builder, keyid: v.keyid, seq: meta.seq, complete: await store.logComplete(decision.repoId, v.keyid, meta.seq) })
    }
    return out
  }

  // Decisions are recomputed once per commit per tick, however many envelopes arrive for it
  // (a catch-up delivers thousands back to back).
  const decisionsDue = new Set<string>()
  let decisionTimer: NodeJS.Timeout | undefined
  function scheduleDecision (repoId: string, commit: string): void {
    decisionsDue.add(`${repoId}@${commit}`)
    decisionTimer ??= setTimeout(() => {
      decisionTimer = undefined
      const due = [...decisionsDue]
      decisionsDue.clear()
      void (async () => {
        for (const k of due) {
          if (stopping) return
          const at = k.indexOf('@')
          await announceDecision(k.slice(0, at), k.slice(at + 1)).catch(err => logger.error('decision failed', { error: (err as Error).message }))
        }
      })()
    }, 50)
  }

  async function announceDecision (repoId: string, commit: string): Promise<void> {
    const { decision } = await decide(repoId, commit)
    const k = `${repoId}@${commit}`
    const sig = `${decision.status}/${decision.trusted?.resultKey ?? ''}/${decision.results.map(r => r.supportingOrgs.length).join(',')}`
    if (lastStatus.get(k) === sig) return
    const wasDisputed = decisionStatus.get(k) === 'disputed'
    lastStatus.set(k, sig)
    decisionStatus.set(k, decision.status)
    if (lastStatus.size > 10_000) lastStatus.delete(lastStatus.keys().next().value as string)
    if (decisionStatus.size > 10_000) decisionStatus.delete(decisionStatus.keys().next().value as string)
    if (decision.status === 'disputed' && !wasDisputed) notify({ type: 'disputed', repoId, commit, summary: decision.summary })
    logger.info('decision', {
      repo: repoId,
      commit: commit.slice(0, 12),
      status: decision.status,
      digest: decision.trusted?.narSha256,
      agreed: decision.trusted?.supportingOrgs.join(','),
      dissent: decision.dissenters.map(d => `${d.builder}:${d.narSha256.slice(0, 12)}`).join(',') || undefined
    })
    events.emit({ type: 'decision', repoId, commit, status: decision.status, narSha256: decision.trusted?.narSha256, supportingOrgs: decision.trusted?.supportingOrgs, summary: decision.summary })
  }

  // Per-signer budget on gossip: an honest builder signs a few envelopes per commit; a member key
  // flooding the network is throttled here (sync still delivers what gossip dropped, at its own pace).
  const signerBudget = new TokenBuckets(50, 500)

  /** Gossip and sync validation: check, store (before accepting, so relays only carry what we kept), then decide. */
  async function validate (msg: IncomingMessage): Promise<Verdict> {
    const check = checkEnvelope(msg.data, policy, { repoId: msg.repoId })
    if (check.verdict !== 'accept') {
      stats.received[check.verdict]++
      const reason = check.reason.split(':')[0]
      stats.rejectReasons[reason] = (stats.rejectReasons[reason] ?? 0) + 1
      metrics.attestations.inc({ verdict: check.verdict === 'reject' ? 'rejected' : 'ignored', reason })
      logger.debug('envelope refused', { verdict: check.verdict, reason: check.reason, from: msg.from, via: msg.via })
      return check.verdict
    }
    const v = check.verified
    if (msg.via === 'gossip' && !signerBudget.take(v.keyid)) {
      stats.received.ignore++
      metrics.attestations.inc({ verdict: 'ignored', reason: 'signer rate limit' })
      return 'ignore'
    }
    const out = await store.putEnvelope(v, msg.data)
    if (out.status === 'duplicate') { stats.received.ignore++; metrics.attestations.inc({ verdict: 'ignored', reason: 'duplicate' }); return 'ignore' }
    verifiedIds.add(v.id)
    stats.received.accept++
    metrics.attestations.inc({ verdict: 'accepted', reason: msg.via })
    const signedAt = Date.parse(v.attestation.kind === 'ref' ? v.attestation.observedOn : v.attestation.finishedOn)
    if (Number.isFinite(signedAt)) metrics.gossipLatency.observe(Math.max(0, Date.now() - signedAt) / 1000, { via: msg.via })
    if (out.status === 'fork') {
      logger.warn('equivocation', { repo: v.attestation.repoId, builder: v.builder, seq: v.attestation.log.seq, hint: 'two different envelopes at one log position: proof stored' })
      events.emit({ type: 'equivocation', repoId: v.attestation.repoId, keyid: v.keyid, builder: v.builder })
      notify({ type: 'equivocation', repoId: v.attestation.repoId, commit: v.attestation.commit, builder: v.builder, summary: `builder "${v.builder}" signed two different envelopes at position ${v.attestation.log.seq} of its log` })
    }
    events.emit({ type: 'attestation', repoId: v.attestation.repoId, commit: v.attestation.commit, envelopeId: v.id, builder: v.builder, kind: v.attestation.kind, via: msg.via })
    scheduleDecision(v.attestation.repoId, v.attestation.commit)
    return 'accept'
  }

  const network = await startNetwork({
    peerKey,
    listen: config.listen,
    announce: config.announce,
    bootstrap: config.bootstrap,
    loopbackNetwork: config.loopbackNetwork,
    repoIds: [...policy.repositories.keys()],
    validate,
    sync: { heads: async () => await store.logHeads(), envelopesAfter: (r, k, s) => store.envelopesAfter(r, k, s) },
    blobs: { get: async (sha256) => await store.getBlob(sha256) },
    mdns: config.mdns,
    log: (event, fields) => { if (/connect|ban|graylist/.test(event)) logger.info(`network ${event}`, fields); else logger.debug(`network ${event}`, fields) }
  })
  logger.info('network started', { peerId: network.peerId, addrs: network.multiaddrs().join(' ') })

  // --- signing: one log per (repository, own key); persisted (fsync) before it is published ---
  let signChain: Promise<unknown> = Promise.resolve()
  const unpublished = new Map<string, { repoId: string, bytes: Uint8Array, tries: number }>()

  function signPersistPublish (repoId: string, make: (log: LogPosition) => Record<string, unknown>): Promise<string> {
    const run = async (): Promise<string> => {
      const head = await store.logHead(repoId, key.keyid)
      const log: LogPosition = head === undefined ? { seq: 0, prev: null } : { seq: head.seq + 1, prev: head.envelopeId }
      const signed = signStatement(make(log), key)
      const check = checkEnvelope(signed.bytes, policy, { repoId })
      if (check.verdict === 'accept') {
        await store.putEnvelope(check.verified, signed.bytes, { sync: true })
        if (config.faultInjection?.crashAfterPersist === true && check.verified.attestation.kind === 'build') {
          logger.warn('fault injection: crashing between persist and publish', { envelopeId: signed.id })
          process.kill(process.pid, 'SIGKILL')
        }
        verifiedIds.add(signed.id)
        events.emit({ type: 'attestation', repoId, commit: check.verified.attestation.commit, envelopeId: signed.id, builder: check.verified.builder, kind: check.verified.attestation.kind, via: 'self' })
        scheduleDecision(repoId, check.verified.attestation.commit)
      } else {
        logger.warn('own attestation not counted', { reason: check.reason })
      }
      unpublished.set(signed.id, { repoId, bytes: signed.bytes, tries: 0 })
      void flushPublishes()
      return signed.id
    }
    const p = signChain.then(run, run)
    signChain = p.catch(() => {})
    return p
  }

  let flushing = false
  async function flushPublishes (): Promise<void> {
    if (flushing) return
    flushing = true
    try {
      for (const [id, item] of [...unpublished]) {
        if (stopping) return
        try {
          const { recipients } = await network.publish(item.repoId, item.bytes)
          item.tries++
          metrics.publishes.inc({ result: recipients > 0 ? 'delivered' : 'no-peers' })
          if (recipients > 0 || item.tries > 20) unpublished.delete(id)
        } catch (err) {
          item.tries++
          metrics.publishes.inc({ result: 'error' })
          logger.debug('publish failed', { error: (err as Error).message })
        }
      }
    } finally {
      flushing = false
    }
  }
  const publishTimer = setInterval(() => { void flushPublishes() }, 2000)

  // --- watching and building ---------------------------------------------------------
  const mirrors = new Map<string, GitMirror>()
  for (const repo of policy.repositories.values()) {
    mirrors.set(repo.id, new GitMirror({ url: repo.url, dir: join(config.dataDir, 'git', `${repo.id}.git`), credentials: config.credentials[repo.id] }))
  }
  const recipeKeyOf = (repo: RepositoryPolicy): string => repo.recipeDigest ?? 'repo'

  async function pollRepo (repo: RepositoryPolicy): Promise<void> {
    const mirror = mirrors.get(repo.id)!
    const t0 = Date.now()
    await mirror.fetch()
    const refs = await mirror.resolveRefs({ branches: repo.branches, tags: repo.tags })
    const seen = (await store.getState<Record<string, string>>(`refs/${repo.id}`)) ?? {}
    let queued = 0
    for (const [ref, commit] of [...refs].sort(([a], [b]) => a < b ? -1 : 1)) {
      const old = seen[ref]
      if (old === commit) continue
      let commits: string[]
      try {
        commits = await mirror.commitsSince(commit, old ?? null, old === undefined ? config.backfill : 1000)
      } catch {
        commits = await mirror.commitsSince(commit, null, config.backfill) // force-push: old head gone
      }
      for (const c of commits) {
        if (await store.enqueueJob({ repoId: repo.id, commit: c, ref, recipeKey: recipeKeyOf(repo), queuedAt: Date.now() })) queued++
      }
      logger.info('ref moved', { repo: repo.id, ref, from: old?.slice(0, 12) ?? '(new)', to: commit.slice(0, 12), newCommits: commits.length })
      if (member !== undefined) {
        await signPersistPublish(repo.id, log => makeRefObservationStatement({ repoId: repo.id, ref, commit, builderId, observedOn: new Date().toISOString(), log }))
      }
      seen[ref] = commit
      await store.putState(`refs/${repo.id}`, seen)
    }
    logger.debug('polled', { repo: repo.id, ms: Date.now() - t0, queued })
    if (queued > 0) kickWorker()
  }

  const pollErrors = new Map<string, string>()
  async function pollAll (only?: string): Promise<void> {
    for (const repo of policy.repositories.values()) {
      if (only !== undefined && repo.id !== only) continue
      try {
        await pollRepo(repo)
        if (pollErrors.has(repo.id)) logger.info('repository reachable again', { repo: repo.id })
        pollErrors.delete(repo.id)
      } catch (err) {
        const message = (err as Error).message
        if (pollErrors.get(repo.id) !== message) logger.error('poll failed', { repo: repo.id, error: message })
        pollErrors.set(repo.id, message)
      }
    }
  }

  // One poll at a time; a request that arrives during a poll (a webhook for a push that
  // poll may have missed) runs one more poll right after it.
  let polling: Promise<void> | undefined
  let again: Promise<void> | undefined
  function pollNow (only?: string): Promise<void> {
    if (polling === undefined) {
      polling = pollAll(only).finally(() => { polling = undefined })
      return polling
    }
    again ??= polling.then(() => { again = undefined; return pollNow(only) })
    return again
  }
  const pollTimer = setInterval(() => { if (!stopping) void pollNow() }, config.pollIntervalSeconds * 1000)

  let running = 0
  const abort = new AbortController()
  function kickWorker (): void {
    if (stopping || member === undefined) return
    void (async () => {
      while (running < config.concurrency && !stopping) {
        const now = Date.now()
        const next = (await store.jobsList()).filter(j => j.state === 'queued' && j.notBefore <= now).sort((a, b) => a.queuedAt - b.queuedAt)[0]
        if (next === undefined) return
        running++
        next.state = 'running'
        next.attempts++
        await store.updateJob(next)
        void runJob(next).catch(err => logger.error('build job crashed', { repo: next.repoId, commit: next.commit, error: (err as Error).message }))
          .finally(() => { running--; kickWorker() })
      }
    })()
  }
  const retryTimer = setInterval(kickWorker, 5000)

  async function runJob (job: BuildJob): Promise<void> {
    const repo = policy.repositories.get(job.repoId)
    if (repo === undefined) return
    // An envelope for this build key may exist from before a crash: republish it, never rebuild.
    const own = (await store.envelopesForCommit(job.repoId, job.commit)).find(e => e.meta.keyid === key.keyid && e.meta.kind === 'build')
    if (own !== undefined) {
      unpublished.set(own.meta.id, { repoId: job.repoId, bytes: own.bytes, tries: 0 })
      await store.updateJob({ ...job, state: 'succeeded', envelopeId: own.meta.id })
      void flushPublishes()
      return
    }
    let spec: RecipeSpec
    if (repo.recipe !== undefined) {
      spec = repo.recipe
    } else {
      // recipeFromRepo: the recipe is .quorate/recipe.json at this very commit; its limits are
      // capped by the node's defaults (a repository cannot grant itself more).
      const problem = await (async (): Promise<string | RecipeSpec> => {
        let bytes: Uint8Array | undefined
        try {
          bytes = await mirrors.get(job.repoId)!.readFile(job.commit, '.quorate/recipe.json')
        } catch (err) {
          return `cannot read .quorate/recipe.json: ${(err as Error).message}`
        }
        if (bytes === undefined) return 'the commit has no .quorate/recipe.json, and the policy says the recipe comes from the repository'
        try {
          const parsed = parseRecipeSpec(parseJsonStrict(Buffer.from(bytes).toString('utf8'), '.quorate/recipe.json'), '.quorate/recipe.json')
          if (parsed.recipe.image !== undefined) parseImageSpec(parsed.recipe.image, '.quorate/recipe.json: image')
          if (repo.requireRoot && parsed.recipe.root === undefined) return REQUIRE_ROOT_REASON
          const limits = { ...parsed.limits }
          for (const k of Object.keys(limits) as Array<keyof typeof limits>) limits[k] = Math.min(limits[k], DEFAULT_RECIPE_LIMITS[k])
          return { recipe: parsed.recipe, limits }
        } catch (err) {
          return (err as Error).message
        }
      })()
      if (typeof problem === 'string') {
        const id = await signPersistPublish(job.repoId, log => makeFailureStatement({
          repoId: job.repoId, ref: job.ref, commit: job.commit, exitStatus: null, timedOut: false, reason: problem,
          logSha256: sha256Hex(''), fingerprint: { sandbox: config.sandbox }, builderId, finishedOn: new Date().toISOString(), log
        }))
        await store.updateJob({ ...job, state: 'failed', notBefore: Number.MAX_SAFE_INTEGER, envelopeId: id, lastError: problem })
        logger.warn('build failed', { repo: job.repoId, commit: job.commit.slice(0, 12), reason: problem, retry: false })
        return
      }
      spec = problem
    }
    const executed = config.faultInjection?.tamperOutput === true ? tamperedRecipe(spec.recipe) : spec.recipe
    const workDir = join(buildArea, randomUUID())
    const outputCopyDir = join(config.dataDir, 'work', `${randomUUID()}.out`)
    logger.info('build started', { repo: job.repoId, commit: job.commit.slice(0, 12), ref: job.ref, attempt: job.attempts })
    events.emit({ type: 'build', repoId: job.repoId, commit: job.commit, phase: 'started' })
    const t0 = Date.now()
    let outcome
    try {
      outcome = await runBuild({
        repoId: job.repoId,
        commit: job.commit,
        ref: job.ref,
        mirror: mirrors.get(job.repoId)!,
        workDir,
        recipe: executed,
        limits: spec.limits,
        sandbox: config.sandbox,
        user: buildUser,
        fetchNetwork: config.fetchNetwork,
        rootCache,
        outputCopyDir,
        signal: abort.signal,
        onProgress: (phase) => logger.debug('build phase', { repo: job.repoId, commit: job.commit.slice(0, 12), phase })
      })
    } catch (err) {
      rmSync(workDir, { recursive: true, force: true })
      if (stopping) { await store.updateJob({ ...job, state: 'queued' }); return }
      const message = (err as Error).message
      logger.error('build could not run', { repo: job.repoId, commit: job.commit.slice(0, 12), error: message })
      // A build root that cannot be pulled or verified is the node's trouble: wait and retry, never give up on the build.
      const rootTrouble = isQuorateError(err, 'ROOT_UNAVAILABLE')
      await store.updateJob({
        ...job,
        state: rootTrouble || job.attempts < MAX_ATTEMPTS ? 'queued' : 'failed',
        notBefore: Date.now() + (rootTrouble ? Math.min(300_000, 5_000 * 2 ** Math.min(job.attempts, 6)) : 30_000 * 2 ** job.attempts),
        lastError: message
      })
      return
    }
    if (stopping) { await store.updateJob({ ...job, state: 'queued' }); return }
    const recipe = spec.recipe
    if (outcome.ok) {
      const o = outcome.output
      await store.putBlob(o.fileListSha256, o.fileListBytes)
      keepOutputFiles(outputCopyDir, o.fileList.files)
      const id = await signPersistPublish(job.repoId, log => makeProvenanceStatement({
        repoId: job.repoId,
        ref: job.ref,
        commit: job.commit,
        recipe,
        narSha256: o.narSha256,
        fileListSha256: o.fileListSha256,
        topLevelFiles: o.topLevelFiles,
        ...(outcome.images !== undefined ? { images: outcome.images.map(i => ({ name: i.name, sha256: i.sha256.replace(/^sha256:/, '') })) } : {}),
        logSha256: outcome.log.sha256,
        fingerprint: outcome.fingerprint as unknown as Record<string, unknown>,
        builderId,
        invocationId: randomUUID(),
        startedOn: outcome.startedOn,
        finishedOn: outcome.finishedOn,
        log
      }))
      stats.buildsSucceeded++
      metrics.builds.inc({ outcome: 'success' })
      metrics.buildSeconds.observe((Date.now() - t0) / 1000, { outcome: 'success' })
      await store.updateJob({ ...job, state: 'succeeded', envelopeId: id })
      logger.info('build succeeded', { repo: job.repoId, commit: job.commit.slice(0, 12), narSha256: o.narSha256, files: o.fileCount, ms: Date.now() - t0, ...Object.fromEntries(Object.entries(outcome.durationsMs).map(([k, v]) => [k, Math.round(v as number)])) })
      events.emit({ type: 'build', repoId: job.repoId, commit: job.commit, phase: 'finished', ok: true, durationMs: Date.now() - t0 })
    } else {
      const id = await signPersistPublish(job.repoId, log => makeFailureStatement({
        repoId: job.repoId,
        ref: job.ref,
        commit: job.commit,
        recipe,
        exitStatus: outcome.exitStatus,
        timedOut: outcome.timedOut,
        reason: outcome.reason,
        logSha256: outcome.log.sha256,
        fingerprint: outcome.fingerprint as unknown as Record<string, unknown>,
        builderId,
        finishedOn: outcome.finishedOn,
        log
      }))
      stats.buildsFailed++
      metrics.builds.inc({ outcome: 'failure' })
      metrics.buildSeconds.observe((Date.now() - t0) / 1000, { outcome: 'failure' })
      const retry = job.attempts < MAX_ATTEMPTS
      await store.updateJob({ ...job, state: retry ? 'queued' : 'failed', notBefore: Date.now() + 30_000 * 2 ** (job.attempts - 1), envelopeId: id, lastError: outcome.reason })
      logger.warn('build failed', { repo: job.repoId, commit: job.commit.slice(0, 12), reason: outcome.reason, exitStatus: outcome.exitStatus, timedOut: outcome.timedOut, retry, logTail: outcome.log.tail.slice(-400) })
      events.emit({ type: 'build', repoId: job.repoId, commit: job.commit, phase: 'finished', ok: false, durationMs: Date.now() - t0 })
    }
    rmSync(workDir, { recursive: true, force: true })
    rmSync(outputCopyDir, { recursive: true, force: true })
  }

  /**
   * Keeps the output's files content-addressed (dataDir/files/<sha256>, read-only) so auditors
   * can fetch any builder's output by the hashes in its signed file list.
   */
  function keepOutputFiles (copyDir: string, files: Array<{ path: string, type: string, sha256?: string }>): void {
    const filesDir = join(config.dataDir, 'files')
    mkdirSync(filesDir, { recursive: true })
    for (const f of files) {
      if (f.type !== 'file' || f.sha256 === undefined) continue
      const dest = join(filesDir, f.sha256)
      if (existsSync(dest)) continue
      const src = join(copyDir, f.path)
      try {
        try { linkSync(src, dest) } catch { copyFileSync(src, dest) }
        chmodSync(dest, 0o444)
      } catch (err) {
        logger.warn('output not kept', { path: f.path, error: (err as Error).message })
      }
    }
  }

  // Jobs left running by a killed process start again; the envelope check in runJob keeps a
  // build that was already signed from being signed twice.
  for (const job of await store.jobsList()) {
    if (job.state === 'running') await store.updateJob({ ...job, state: 'queued', attempts: Math.max(0, job.attempts - 1) })
  }
  // Republish what we signed most recently (gossip is lossy; sync covers the rest).
  for (const job of (await store.jobsList()).filter(j => j.envelopeId !== undefined).slice(-50)) {
    const bytes = await store.getEnvelope(job.envelopeId!, key.keyid)
    if (bytes !== undefined) unpublished.set(job.envelopeId!, { repoId: job.repoId, bytes, tries: 0 })
  }
  // Work dirs a killed process left behind (the build area itself stays: the build user must reach it).
  if (buildArea !== join(config.dataDir, 'work')) rmSync(join(config.dataDir, 'work'), { recursive: true, force: true })
  for (const name of readdirSync(buildArea)) rmSync(join(buildArea, name), { recursive: true, force: true })

  async function queueSummary (): Promise<Record<string, number>> {
    const out: Record<string, number> = { queued: 0, running: 0, succeeded: 0, failed: 0 }
    for (const j of await store.jobsList()) out[j.state]++
    return out
  }

  metrics.registry.collect('quorate_peers', 'Connected libp2p peers.', 'gauge', () => [[{}, network.connectedPeers().length]])
  metrics.registry.collect('quorate_decisions', 'Commits by the latest decision status this node computed since it started.', 'gauge', () => {
    const counts: Record<string, number> = { trusted: 0, disputed: 0, pending: 0 }
    for (const st of decisionStatus.values()) counts[st] = (counts[st] ?? 0) + 1
    return Object.entries(counts).map(([status, n]) => [{ status }, n])
  })
  metrics.registry.collect('quorate_network_messages_total', 'Gossip and sync messages by path and verdict, as the network layer counted them.', 'counter', () => {
    const s = network.stats()
    return [
      [{ path: 'gossip', verdict: 'received' }, s.gossipReceived], [{ path: 'gossip', verdict: 'accepted' }, s.gossipAccepted],
      [{ path: 'gossip', verdict: 'rejected' }, s.gossipRejected], [{ path: 'gossip', verdict: 'ignored' }, s.gossipIgnored],
      [{ path: 'sync', verdict: 'received' }, s.syncReceived], [{ path: 'sync', verdict: 'accepted' }, s.syncAccepted],
      [{ path: 'sync', verdict: 'rejected' }, s.syncRejected], [{ path: 'sync', verdict: 'ignored' }, s.syncIgnored]
    ]
  })
  metrics.registry.collect('quorate_sync_rounds_total', 'Sync rounds by result.', 'counter', () => {
    const s = network.stats()
    return [[{ result: 'ok' }, s.syncRounds], [{ result: 'failed' }, s.syncFailures]]
  })
  metrics.registry.collect('quorate_peers_banned_total', 'Peers disconnected and kept out for bad behaviour.', 'counter', () => [[{}, network.stats().peersBanned]])
  metrics.registry.collect('quorate_build_queue', 'Build jobs by state.', 'gauge', () => Object.entries(queueCache).map(([state, n]) => [{ state }, n]))
  let queueCache: Record<string, number> = {}
  const queueTimer = setInterval(() => { void queueSummary().then(q => { queueCache = q }).catch(() => {}) }, 5000)
  queueCache = await queueSummary()

  let http: HttpApi | undefined
  const node: QuorateNode = {
    config,
    policy,
    key,
    store,
    network,
    events,
    stats,
    metrics,
    decisionStatus,
    builderName,
    get httpUrl () { return http?.url ?? '' },
    decide,
    logCompleteness,
    pollNow,
    queueSummary,
    rootCache,
    stop: async () => {
      if (stopping) return
      stopping = true
      clearInterval(pollTimer); clearInterval(retryTimer); clearInterval(publishTimer); clearInterval(queueTimer); clearTimeout(decisionTimer)
      abort.abort()
      await http?.close()
      await polling?.catch(() => {})
      while (running > 0) await new Promise(resolve => setTimeout(resolve, 50))
      await signChain.catch(() => {})
      await network.stop()
      await store.close()
      logger.info('stopped', {})
    }
  }
  try {
    http = await startHttpApi(node, logger)
  } catch (err) {
    await node.stop()
    throw err
  }
  logger.info('node started', {
    builder: builderName ?? '(not in policy)',
    keyid: key.keyid,
    http: http.url,
    repos: [...policy.repositories.keys()].join(','),
    sandbox: config.sandbox,
    pollSeconds: config.pollIntervalSeconds
  })
  void pollNow()
  kickWorker()
  void flushPublishes()
  return node
}


import { Level } from 'level'
import { readFile, rm, stat } from 'node:fs/promises'
import { closeSync, fstatSync, openSync, readSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { QuorateError, TokenBuckets, sha256Hex, type BuildJob, type BuildJobState, type VerifiedAttestation } from '@quorate/core'
import { BlobFiles, bytesBlobReader, type BlobFileReader } from './blob-files.js'

/** What the store keeps per envelope, besides the raw bytes. */
export interface StoredEnvelopeMeta {
  id: string
  keyid: string
  builder: string
  org: string
  repoId: string
  commit: string
  kind: 'build' | 'failure' | 'ref'
  seq: number
  /** Previous envelope id in the signer's log (null at seq 0). */
  prev?: string | null
  /** For ref observations: the ref; for builds: the ref that was built. */
  ref: string
  /** Build results only: the headline digest, for digest → commit lookups. */
  narSha256?: string
  receivedAt: number
}

export type PutOutcome =
  | { status: 'stored' }
  | { status: 'duplicate' }
  /** Another envelope already holds this (key, repository, seq): the pair is stored as an equivocation proof. */
  | { status: 'fork', existing: Uint8Array, proofStored: boolean }

export interface LogHead { repoId: string, keyid: string, seq: number, envelopeId: string }

export interface EquivocationProof { repoId: string, keyid: string, envelopes: [Uint8Array, Uint8Array], foundAt: number }

export type { BuildJob, BuildJobState } from '@quorate/core'

export interface CommitInfo { repoId: string, commit: string, firstSeen: number }

/** A build log this node keeps, by the digest its attestation signed (see putBuildLog). */
export interface BuildLogMeta {
  repoId: string
  commit: string
  /** Whether the kept bytes are the whole log (then they hash to the signed digest). */
  complete: boolean
  /** The SHA-256 of the kept bytes (equal to the signed digest when complete). */
  keptSha256: string
  /** Size of the whole log as the build wrote it. */
  totalBytes: number
  keptAt: number
}

/**
 * One build whose outputs this node keeps: what retention (see keptBuilds, forgetKept) counts
 * by age, count and size. Its output files are named by its file list.
 */
export interface KeptBuild {
  repoId: string
  commit: string
  keptAt: number
  narSha256?: string
  fileListSha256?: string
  /** The signed build-log digest (see buildLog). */
  logSha256?: string
  /** Bytes kept: output files, file list and log. */
  bytes: number
}

export interface StoreOptions {
  /**
   * Where output files larger than `SMALL_BLOB_BYTES` are kept, content-addressed (default: a
   * `blobs` directory next to the store's directory). Deleting it reclaims their space.
   */
  blobsDir?: string
  /**
   * Per (repository, signer): how many commits the commit indexes do not hold yet that its ref
   * observations may add, as a burst and a refill per hour. Every valid envelope is stored (logs
   * keep no gaps); over budget, the commits only that observation names are not indexed (not
   * listed, not looked up by commit). Default: no limit.
   */
  commitIndexBudget?: { burst: number, perHour: number }
}

/** What one signer's ref observations over its commitIndexBudget left out of a repository's commit indexes. */
export interface NotIndexed {
  repoId: string
  keyid: string
  /** Commits new to the indexes that were not indexed. */
  commits: number
  /** Envelopes stored (their logs keep no gap) whose new commits were not indexed. */
  envelopes: number
}

/** Output files up to this size live inside the LevelDB (no filesystem block each); larger ones in the blobs directory. */
export const SMALL_BLOB_BYTES = 64 * 1024
/** Small output files written in one LevelDB batch at most (at most 32 MiB of values). */
const OUTPUT_BATCH = 512

const SEP = '!'
const pad = (n: number): string => n.toString().padStart(16, '0')

type Bytes = Uint8Array

interface StoredPosition { repoId: string, keyid: string, seq: number, envKey: string, prev?: string | null }

interface LinkedPrefix { seq: number, id: string | null }

interface PendingPut { v: VerifiedAttestation, bytes: Bytes, sync: boolean, now: number, resolve: (o: PutOutcome) => void, reject: (err: unknown) => void }

/** classic-level's read option (absent from abstract-level's types): the blocks read are not kept in LevelDB's block cache. */
const UNCACHED = { fillCache: false } as { keyEncoding?: undefined }

/** Envelopes written in one LevelDB batch at most. */
const MAX_BATCH = 512
const MAX_KNOWN_COMMITS = 1_000_000
/** Logs (and signers' refs) whose highest position is kept in memory at most (a policy has far fewer). */
const MAX_KNOWN_LOGS = 100_000
/** Positions past a log's linked prefix remembered per log (see linkedAhead). */
const MAX_AHEAD_PER_LOG = 4096

/**
 * The node's LevelDB: envelopes (idempotent by envelope id and signer), indexes by
 * (repository, commit), by signer and by log position, equivocation proofs, the build
 * queue, small node state and content-addressed blobs (file lists).
 */
export class Store {
  private readonly db: Level<string, Bytes>
  private readonly envs
  private readonly metas
  private readonly byCommit
  private readonly logs
  private readonly commits
  private readonly proofs
  private readonly jobs
  private readonly state
  private readonly blobs
  private readonly byDigest
  /** Queued jobs by due time: `pad(notBefore)!pad(queuedAt)!jobKey`. */
  private readonly due
  private readonly byRef
  /** Small output files by sha256. */
  private readonly outputs
  private readonly blobFiles: BlobFiles
  /** Blobs (file lists, logs) over SMALL_BLOB_BYTES, as files. */
  private readonly largeBlobs: BlobFiles
  /** Per log, the end of its prefix known complete and linked (see logComplete): a cache of the logs index, written with it. */
  private readonly linkedIndex
  private readonly buildLogs
  private readonly kept
  private readonly privateBlobs
  private writeChain: Promise<unknown> = Promise.resolve()
  /** putEnvelope calls waiting for the next batch. */
  private pending: PendingPut[] = []
  private flushQueued = false
  /** Build jobs by state, once counted (jobCounts). */
  private jobStateCounts: Record<BuildJobState, number> | undefined
  /** Contiguous log heads, once scanned (see logHeads); the store stays the truth. */
  private heads: Map<string, LogHead> | undefined
  /** (repository, commit) keys known to be in the commits index: saves a read per envelope. */
  private readonly knownCommits = new Set<string>()
  /** Per log, the end of its prefix known complete and linked (see logComplete). */
  private readonly linked = new Map<string, LinkedPrefix>()
  /**
   * Per log, positions written past its linked prefix (out of order: a gap, or a batch boundary
   * between two validations that finished in another order), so that the prefix moves past them
   * when the gap closes without reading them back. Bounded; what is left out is read by logComplete.
   */
  private readonly linkedAhead = new Map<string, Map<number, { id: string, prev?: string | null }>>()
  /**
   * Per log (repository!keyid), the highest position the logs index holds (-1: none), read once
   * per log and moved by every write (which runs one at a time with the read). An envelope beyond
   * it is new and its position free (an envelope id fixes its log and position), so a batch reads
   * the store only for envelopes at or below it: duplicates, gap fills and forks.
   */
  private readonly maxSeq = new Map<string, number>()
  /**
   * Per (repository, ref, signer), its newest stored ref observation (seq and commit; null: none),
   * read once, then moved by writes: what a new observation's `previous` must name (priorRefCommit).
   */
  private readonly refTips = new Map<string, { seq: number, commit: string } | null>()
  private readonly indexBudget: TokenBuckets | undefined
  /** Per (repository, signer): what ref observations over the signer's commitIndexBudget left out of the indexes, since the store opened. */
  private readonly notIndexed = new Map<string, NotIndexed>()

  private constructor (db: Level<string, Bytes>, blobsDir: string, opts: StoreOptions = {}) {
    this.db = db
    const b = opts.commitIndexBudget
    this.indexBudget = b === undefined ? undefined : new TokenBuckets({ ratePerSecond: b.perHour / 3600, burst: b.burst })
    this.blobFiles = new BlobFiles(blobsDir)
    this.largeBlobs = new BlobFiles(join(blobsDir, 'large'))
    this.envs = db.sublevel<string, Bytes>('env', { valueEncoding: 'view' })
    this.metas = db.sublevel<string, StoredEnvelopeMeta>('meta', { valueEncoding: 'json' })
    this.byCommit = db.sublevel<string, string>('bycommit', { valueEncoding: 'utf8' })
    this.logs = db.sublevel<string, string>('log', { valueEncoding: 'utf8' })
    this.commits = db.sublevel<string, CommitInfo>('commits', { valueEncoding: 'json' })
    this.proofs = db.sublevel<string, { repoId: string, keyid: string, a: string, b: string, foundAt: number }>('proofs', { valueEncoding: 'json' })
    this.jobs = db.sublevel<string, BuildJob>('jobs', { valueEncoding: 'json' })
    this.state = db.sublevel<string, unknown>('state', { valueEncoding: 'json' })
    this.blobs = db.sublevel<string, Bytes>('blob', { valueEncoding: 'view' })
    this.outputs = db.sublevel<string, Bytes>('output', { valueEncoding: 'view' })
    this.byDigest = db.sublevel<string, string>('bydigest', { valueEncoding: 'utf8' })
    this.due = db.sublevel<string, string>('due', { valueEncoding: 'utf8' })
    this.byRef = db.sublevel<string, string>('byref', { valueEncoding: 'utf8' })
    this.linkedIndex = db.sublevel<string, LinkedPrefix>('linked', { valueEncoding: 'json' })
    this.buildLogs = db.sublevel<string, BuildLogMeta>('buildlog', { valueEncoding: 'json' })
    this.kept = db.sublevel<string, KeptBuild>('kept', { valueEncoding: 'json' })
    this.privateBlobs = db.sublevel<string, string>('private', { valueEncoding: 'utf8' })
  }

  static async open (dir: string, opts: StoreOptions = {}): Promise<Store> {
    const db = new Level<string, Bytes>(dir, { valueEncoding: 'view' })
    try {
      await db.open()
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause
      if ((err as { code?: string }).code === 'LEVEL_LOCKED' || cause?.code === 'LEVEL_LOCKED' || /lock/i.test(String((err as Error).message) + String(cause))) {
        throw new QuorateError('STORE_LOCKED', `another Quorate node is using the data directory ${dir}; stop it first, or give this node its own "dataDir"`, { dir }, { cause: err })
      }
      throw new QuorateError('STORE_FAILED', `cannot open the store in ${dir}: ${(err as Error).message}; check the directory's permissions and free space`, { dir }, { cause: err })
    }
    const store = new Store(db, opts.blobsDir ?? join(dirname(dir), 'blobs'), opts)
    await store.checkFormat(dir)
    await store.indexDueJobs()
    await store.indexRefObservations()
    for await (const [log, at] of store.linkedIndex.iterator()) store.linked.set(log, at)
    await store.largeBlobs.clearTemp() // blobs a stopped process was still fetching or writing
    return store
  }

  /** Store format versioning: a newer release opens an older store or says why not. */
  private async checkFormat (dir: string): Promise<void> {
    const version = await this.state.get('format')
    if (version === undefined) {
      await this.state.put('format', STORE_FORMAT)
    } else if (version !== STORE_FORMAT) {
      await this.db.close()
      throw new QuorateError('STORE_FAILED', `the store in ${dir} has format ${String(version)}, this release reads format ${STORE_FORMAT}; use the matching Quorate release or restore a backup`, { dir })
    }
  }

  /** Builds the ref-observation index for a store written before it existed (once). */
  private async indexRefObservations (): Promise<void> {
    if (await this.state.get('index:byref') !== undefined) return
    const ops: unknown[] = []
    for await (const m of this.metas.values()) {
      if (m.kind === 'ref') ops.push({ type: 'put', sublevel: this.byRef, key: m.repoId + SEP + m.ref + SEP + m.keyid + SEP + pad(m.seq), value: m.id + SEP + m.keyid })
    }
    ops.push({ type: 'put', sublevel: this.state, key: 'index:byref', value: 1 })
    await this.db.batch(ops as never)
  }

  async close (): Promise<void> {
    await this.writeChain.catch(() => {})
    await this.db.close()
  }

  /** Serializes writes that read before they write (fork detection, job updates). */
  private exclusive<T> (fn: () => Promise<T>): Promise<T> {
    const next = this.writeChain.then(fn, fn)
    this.writeChain = next.catch(() => {})
    return next
  }

  /**
   * Stores a verified envelope. Idempotent: the same (envelope id, signer) is a duplicate.
   * A different envelope at an already used (repository, signer, seq) is a fork: the first
   * such pair is kept as an equivocation proof. `sync` fsyncs before resolving (own envelopes).
   * Resolves once the envelope is written: calls made while a write is under way are stored
   * together in the next LevelDB batch (group commit), so concurrent callers (a catch-up) pay
   * for one batch and three multi-gets per batch instead of several reads and a batch each.
   */
  putEnvelope (v: VerifiedAttestation, bytes: Bytes, opts: { sync?: boolean, now?: number } = {}): Promise<PutOutcome> {
    return new Promise<PutOutcome>((resolve, reject) => {
      this.pending.push({ v, bytes, sync: opts.sync === true, now: opts.now ?? Date.now(), resolve, reject })
      if (!this.flushQueued) {
        this.flushQueued = true
        void this.exclusive(async () => await this.flushPending())
      }
    })
  }

  /** Stores many verified envelopes, in one LevelDB batch where they fit (see putEnvelope). */
  async putEnvelopes (items: Array<{ verified: VerifiedAttestation, bytes: Bytes }>, opts: { sync?: boolean, now?: number } = {}): Promise<PutOutcome[]> {
    return await Promise.all(items.map(async i => await this.putEnvelope(i.verified, i.bytes, opts)))
  }

  private async flushPending (): Promise<void> {
    this.flushQueued = false
    const items = this.pending.splice(0, MAX_BATCH)
    if (this.pending.length > 0) {
      this.flushQueued = true
      void this.exclusive(async () => await this.flushPending())
    }
    if (items.length === 0) return
    try {
      const outcomes = await this.writeEnvelopes(items)
      items.forEach((it, i) => it.resolve(outcomes[i]))
    } catch (err) {
      for (const it of items) it.reject(err)
    }
  }

  /** One batch for many envelopes: the reads are three multi-gets, duplicates and forks inside the batch are seen too. */
  private async writeEnvelopes (items: PendingPut[]): Promise<PutOutcome[]> {
    const envKeys = items.map(it => it.v.id + SEP + it.v.keyid)
    const logOf = items.map(it => it.v.attestation.repoId + SEP + it.v.keyid)
    const logKeys = items.map((it, i) => logOf[i] + SEP + pad(it.v.attestation.log.seq))
    const commitsOfItem = items.map(({ v: { attestation: a } }) => a.kind === 'ref' ? [a.commit, ...a.introduced.filter(c => c !== a.commit)] : [a.commit])
    const commitKeys = items.flatMap((it, i) => commitsOfItem[i].map(c => it.v.attestation.repoId + SEP + c))
    const unknownCommits = [...new Set(commitKeys.filter(k => !this.knownCommits.has(k)))]
    await this.loadMaxSeq(logOf)
    // only envelopes at or below their log's highest stored position can be duplicates or forks
    const toRead: number[] = []
    items.forEach((it, i) => { if (it.v.attestation.log.seq <= this.maxSeq.get(logOf[i])!) toRead.push(i) })
    const [readEnv, readSeq, haveCommit] = await Promise.all([
      toRead.length === 0 ? [] : this.envs.getMany(toRead.map(i => envKeys[i])),
      toRead.length === 0 ? [] : this.logs.getMany(toRead.map(i => logKeys[i])),
      unknownCommits.length === 0 ? [] : this.commits.getMany(unknownCommits)
    ])
    const haveEnv: Array<Bytes | undefined> = new Array(items.length)
    const atSeq: Array<string | undefined> = new Array(items.length)
    toRead.forEach((i, j) => { haveEnv[i] = readEnv[j]; atSeq[i] = readSeq[j] })
    unknownCommits.forEach((k, i) => { if (haveCommit[i] !== undefined) this.rememberCommit(k) })

    const ops: unknown[] = []
    const outcomes: PutOutcome[] = []
    const inBatch = new Map<string, Bytes>() // envKey -> bytes written in this batch
    const logInBatch = new Map<string, string>() // logKey -> envKey written in this batch
    const proofsInBatch = new Set<string>()
    const stored: StoredPosition[] = []
    let sync = false
    for (const [i, it] of items.entries()) {
      const { v, bytes, now } = it
      const a = v.attestation
      const envKey = envKeys[i]
      const logKey = logKeys[i]
      if (haveEnv[i] !== undefined || inBatch.has(envKey)) { outcomes.push({ status: 'duplicate' }); continue }
      const holder = atSeq[i] ?? logInBatch.get(logKey)
      if (holder !== undefined) {
        // a second envelope at a used log position: a fork, kept once as an equivocation proof
        const existing = inBatch.get(holder) ?? await this.envs.get(holder)
        if (existing === undefined) throw new QuorateError('STORE_FAILED', `store index points at a missing envelope ${holder}; restore the data directory from a backup`)
        if (proofsInBatch.has(logKey) || await this.proofs.get(logKey) !== undefined) { outcomes.push({ status: 'duplicate' }); continue }
        ops.push(
          { type: 'put', key: this.envs.prefix + envKey, value: bytes },
          { type: 'put', key: this.metas.prefix + envKey, value: json(metaOf(v, now)) },
          { type: 'put', key: this.proofs.prefix + logKey, value: json({ repoId: a.repoId, keyid: v.keyid, a: holder, b: envKey, foundAt: now }) }
        )
        inBatch.set(envKey, bytes)
        proofsInBatch.add(logKey)
        sync ||= it.sync
        outcomes.push({ status: 'fork', existing, proofStored: true })
        continue
      }
      ops.push(
        { type: 'put', key: this.envs.prefix + envKey, value: bytes },
        { type: 'put', key: this.metas.prefix + envKey, value: json(metaOf(v, now)) },
        { type: 'put', key: this.logs.prefix + logKey, value: utf8(envKey) }
      )
      const indexed = this.withinIndexBudget(v.keyid, a.repoId, a.kind, commitsOfItem[i], now)
      for (const c of indexed) ops.push({ type: 'put', key: this.byCommit.prefix + a.repoId + SEP + c + SEP + envKey, value: EMPTY })
      if (a.kind === 'build') ops.push({ type: 'put', key: this.byDigest.prefix + a.narSha256 + SEP + a.repoId + SEP + a.commit + SEP + envKey, value: EMPTY })
      // A ref observation is filed under its tip and under every commit the move introduced
      // (DESIGN.md "The attestation"): a push of several commits brought them all onto the ref.
      if (a.kind === 'ref') {
        ops.push({ type: 'put', key: this.byRef.prefix + a.repoId + SEP + a.ref + SEP + v.keyid + SEP + pad(a.log.seq), value: utf8(envKey) })
      }
      for (const c of indexed) {
        const commitKey = a.repoId + SEP + c
        if (!this.knownCommits.has(commitKey)) {
          ops.push({ type: 'put', key: this.commits.prefix + commitKey, value: json({ repoId: a.repoId, commit: c, firstSeen: now }) })
          this.rememberCommit(commitKey)
        }
      }
      inBatch.set(envKey, bytes)
      logInBatch.set(logKey, envKey)
      stored.push({ repoId: a.repoId, keyid: v.keyid, seq: a.log.seq, envKey, prev: a.log.prev })
      sync ||= it.sync
      outcomes.push({ status: 'stored' })
    }
    const { moved: linked, ahead } = this.advanceLinked(stored)
    for (const [log, at] of linked) ops.push({ type: 'put', key: this.linkedIndex.prefix + log, value: json(at) })
    if (ops.length > 0) {
      try {
        // at the root, each sublevel's prefix and value encoding applied above: abstract-level's
        // per-operation sublevel and encoding handling cost about as much main-thread time as
        // the rest of the batch (the bytes are the same: JSON text and UTF-8)
        await this.db.batch(ops as never, { sync })
      } catch (err) {
        // the commits remembered above were not written after all
        this.knownCommits.clear()
        throw err
      }
    }
    this.rememberLinked(linked, ahead)
    for (const s of stored) {
      const log = s.repoId + SEP + s.keyid
      if (s.seq > (this.maxSeq.get(log) ?? Infinity)) this.maxSeq.set(log, s.seq)
    }
    for (const it of items) {
      const a = it.v.attestation
      if (a.kind !== 'ref') continue
      const k = a.repoId + SEP + a.ref + SEP + it.v.keyid
      const tip = this.refTips.get(k)
      // only where known (null: none stored), and only for what this batch put in the byRef index
      if (tip !== undefined && (tip === null || a.log.seq > tip.seq) && logInBatch.get(a.repoId + SEP + it.v.keyid + SEP + pad(a.log.seq)) === it.v.id + SEP + it.v.keyid) {
        this.refTips.set(k, { seq: a.log.seq, commit: a.commit })
      }
    }
    if (this.heads !== undefined && stored.length > 0) await this.advanceHeads(this.heads, stored)
    return outcomes
  }

  /** Reads the highest stored position of the logs not yet known (one reverse seek each). Called inside a write. */
  private async loadMaxSeq (logs: string[]): Promise<void> {
    const unknown = [...new Set(logs.filter(l => !this.maxSeq.has(l)))]
    if (unknown.length === 0) return
    if (this.maxSeq.size + unknown.length > MAX_KNOWN_LOGS) this.maxSeq.clear()
    await Promise.all(unknown.map(async log => {
      let max = -1
      for await (const k of this.logs.keys({ gte: log + SEP, lt: log + SEP + '\xff', reverse: true, limit: 1 })) max = Number(k.slice(log.length + 1))
      this.maxSeq.set(log, max)
    }))
  }

  /**
   * The commit of the signer's newest observation of `ref` before log position `beforeSeq`, or
   * null when there is none: what a new observation's `previous` must name (DESIGN.md). Answered
   * from memory once the signer's newest observation of the ref is known and lies before
   * `beforeSeq`; read from the ref index otherwise.
   */
  async priorRefCommit (repoId: string, ref: string, keyid: string, beforeSeq: number): Promise<string | null> {
    const k = repoId + SEP + ref + SEP + keyid
    let tip = this.refTips.get(k)
    if (tip === undefined) {
      // read with the writes (one at a time), so no write can slip between the read and the remembering
      tip = await this.exclusive(async () => {
        const known = this.refTips.get(k)
        if (known !== undefined) return known
        let found: { seq: number, commit: string } | null = null
        for await (const [key, envKey] of this.byRef.iterator({ gte: k + SEP, lt: k + SEP + '\xff', reverse: true, limit: 1 })) {
          const meta = await this.metas.get(envKey)
          if (meta !== undefined) found = { seq: Number(key.slice(k.length + 1)), commit: meta.commit }
        }
        if (this.refTips.size >= MAX_KNOWN_LOGS) this.refTips.clear()
        this.refTips.set(k, found)
        return found
      })
    }
    if (tip === null) return null
    if (tip.seq < beforeSeq) return tip.commit
    const prefix = k + SEP
    for await (const envKey of this.byRef.values({ gte: prefix, lt: prefix + pad(beforeSeq), reverse: true, limit: 1 })) {
      return (await this.metas.get(envKey))?.commit ?? null
    }
    return null
  }

  /**
   * The commits of one envelope to index: all of them, except for a ref observation whose signer
   * is over its commitIndexBudget for this repository (then only those the index already holds).
   */
  private withinIndexBudget (keyid: string, repoId: string, kind: string, commits: string[], now: number): string[] {
    if (this.indexBudget === undefined || kind !== 'ref') return commits
    const fresh = commits.filter(c => !this.knownCommits.has(repoId + SEP + c))
    if (fresh.length === 0 || this.indexBudget.take(repoId + SEP + keyid, now, fresh.length)) return commits
    const key = repoId + SEP + keyid
    const n = this.notIndexed.get(key) ?? { repoId, keyid, commits: 0, envelopes: 0 }
    n.commits += fresh.length
    n.envelopes++
    this.notIndexed.set(key, n)
    return commits.filter(c => this.knownCommits.has(repoId + SEP + c))
  }

  /** Commits that ref observations named but were not indexed, over their signer's commitIndexBudget, in all. */
  get commitsNotIndexed (): number {
    let n = 0
    for (const x of this.notIndexed.values()) n += x.commits
    return n
  }

  /**
   * Per (repository, signer) over its commitIndexBudget since the store opened: the envelopes
   * stored whose new commits were not indexed, and how many commits they named.
   */
  commitsNotIndexedBy (): NotIndexed[] {
    return [...this.notIndexed.values()].map(x => ({ ...x })).sort((a, b) => a.repoId < b.repoId ? -1 : a.repoId > b.repoId ? 1 : a.keyid < b.keyid ? -1 : 1)
  }

  private rememberCommit (commitKey: string): void {
    if (this.knownCommits.size >= MAX_KNOWN_COMMITS) this.knownCommits.clear()
    this.knownCommits.add(commitKey)
  }

  /** Extends the known-linked prefixes by positions just written in order (others are checked lazily by logComplete). */
  private advanceLinked (stored: StoredPosition[]): { moved: Map<string, LinkedPrefix>, ahead: Array<{ log: string, seq: number, id: string, prev?: string | null }> } {
    const moved = new Map<string, LinkedPrefix>()
    const ahead: Array<{ log: string, seq: number, id: string, prev?: string | null }> = []
    for (const s of [...stored].sort((x, y) => x.seq - y.seq)) {
      const log = s.repoId + SEP + s.keyid
      const at = moved.get(log) ?? this.linked.get(log) ?? { seq: -1, id: null }
      const id = s.envKey.slice(0, s.envKey.indexOf(SEP))
      if (s.seq === at.seq + 1 && (s.prev === undefined || s.prev === at.id)) moved.set(log, { seq: s.seq, id })
      else if (s.seq > at.seq + 1) ahead.push({ log, seq: s.seq, id, prev: s.prev })
    }
    // on through positions stored earlier past the prefix (written out of order): no read needed
    for (const [log, start] of moved) {
      const later = this.linkedAhead.get(log)
      if (later === undefined) continue
      moved.set(log, linkedThrough(start, later))
    }
    return { moved, ahead }
  }

  /** After a batch is written: the linked prefixes it moved, and the positions it stored past them. */
  private rememberLinked (moved: Map<string, LinkedPrefix>, ahead: Array<{ log: string, seq: number, id: string, prev?: string | null }>): void {
    for (const [log, at] of moved) {
      if (at.seq > (this.linked.get(log)?.seq ?? -1)) this.linked.set(log, at) // (logComplete may have read further meanwhile)
      const later = this.linkedAhead.get(log)
      if (later !== undefined) {
        for (const seq of later.keys()) if (seq <= at.seq) later.delete(seq)
        if (later.size === 0) this.linkedAhead.delete(log)
      }
    }
    for (const a of ahead) {
      if ((this.linked.get(a.log)?.seq ?? -1) >= a.seq) continue
      let later = this.linkedAhead.get(a.log)
      if (later === undefined) {
        if (this.linkedAhead.size >= MAX_KNOWN_LOGS) continue
        later = new Map()
        this.linkedAhead.set(a.log, later)
      }
      if (later.size < MAX_AHEAD_PER_LOG) later.set(a.seq, { id: a.id, prev: a.prev })
    }
  }

  /** Moves the in-memory contiguous heads past newly stored positions (and past later ones already stored: a filled gap). */
  private async advanceHeads (heads: Map<string, LogHead>, stored: StoredPosition[]): Promise<void> {
    const touched = new Map<string, { repoId: string, keyid: string }>()
    for (const s of stored.sort((x, y) => x.seq - y.seq)) {
      const log = s.repoId + SEP + s.keyid
      const head = heads.get(log)
      if ((head === undefined && s.seq === 0) || (head !== undefined && s.seq === head.seq + 1)) {
        heads.set(log, { repoId: s.repoId, keyid: s.keyid, seq: s.seq, envelopeId: s.envKey.slice(0, s.envKey.indexOf(SEP)) })
        touched.set(log, s)
      }
    }
    for (const [log, { repoId, keyid }] of touched) {
      let head = heads.get(log)!
      for (;;) {
        if (head.seq + 1 > (this.maxSeq.get(log) ?? Infinity)) break
        const next = await this.logs.get(repoId + SEP + keyid + SEP + pad(head.seq + 1))
        if (next === undefined) break
        head = { repoId, keyid, seq: head.seq + 1, envelopeId: next.slice(0, next.indexOf(SEP)) }
        heads.set(log, head)
      }
    }
  }

  async getEnvelope (id: string, keyid: string): Promise<Bytes | undefined> {
    return await this.envs.get(id + SEP + keyid)
  }

  /** Every envelope stored for one commit (builds, failures, ref observations). */
  async envelopesForCommit (repoId: string, commit: string): Promise<Array<{ meta: StoredEnvelopeMeta, bytes: Bytes }>> {
    const keys = await this.commitEnvelopeKeys(repoId, commit)
    const [bytes, metas] = await Promise.all([this.envs.getMany(keys), this.metas.getMany(keys)])
    return keys.map((_, i) => ({ meta: metas[i]!, bytes: bytes[i]! })).filter(x => x.bytes !== undefined && x.meta !== undefined)
  }

  /**
   * The bytes of every envelope stored for one commit, with its id and signer: one range read
   * and one multi-get (what a decision reads; envelopesForCommit also reads each one's metadata).
   */
  async envelopeBytesForCommit (repoId: string, commit: string): Promise<Array<{ id: string, keyid: string, bytes: Bytes }>> {
    const keys = await this.commitEnvelopeKeys(repoId, commit)
    // not kept in LevelDB's block cache: a commit's envelopes lie in as many blocks as it has
    // envelopes, so caching them only evicts what other readers use (decisions keep their own
    // cache); about 10% less CPU a read at 1M stored
    const bytes = await this.envs.getMany<string, Bytes>(keys, UNCACHED)
    const out: Array<{ id: string, keyid: string, bytes: Bytes }> = []
    keys.forEach((k, i) => {
      const b = bytes[i]
      const at = k.indexOf(SEP)
      if (b !== undefined) out.push({ id: k.slice(0, at), keyid: k.slice(at + 1), bytes: b })
    })
    return out
  }

  /** The log positions (seq) of stored envelopes, by envelope id and signer (undefined where not stored). */
  async logPositions (envelopes: ReadonlyArray<{ id: string, keyid: string }>): Promise<Array<number | undefined>> {
    if (envelopes.length === 0) return []
    return (await this.metas.getMany<string, StoredEnvelopeMeta>(envelopes.map(e => e.id + SEP + e.keyid), UNCACHED)).map(m => m?.seq)
  }

  private async commitEnvelopeKeys (repoId: string, commit: string): Promise<string[]> {
    const prefix = repoId + SEP + commit + SEP
    // all(): one native read for a commit's few keys (a for-await loop reads the first key alone, then the rest)
    return (await this.byCommit.keys({ gte: prefix, lt: prefix + '\xff' }).all()).map(k => k.slice(prefix.length))
  }

  /**
   * Every stored ref observation of a repository (optionally of one ref), raw: callers verify
   * them (core's collectRefMoves) and order them by each signer's log.
   */
  async refObservations (repoId: string, ref?: string): Promise<Bytes[]> {
    const prefix = repoId + SEP + (ref !== undefined ? ref + SEP : '')
    const keys: string[] = []
    for await (const envKey of this.byRef.values({ gte: prefix, lt: prefix + '\xff' })) keys.push(envKey)
    return (await this.envs.getMany(keys)).filter((b): b is Bytes => b !== undefined)
  }

  /**
   * The signer's newest observation of `ref` before log position `beforeSeq` (raw bytes), or
   * undefined: what a new observation's `previous` must name.
   */
  async priorRefObservation (repoId: string, ref: string, keyid: string, beforeSeq: number): Promise<Bytes | undefined> {
    const prefix = repoId + SEP + ref + SEP + keyid + SEP
    for await (const envKey of this.byRef.values({ gte: prefix, lt: prefix + pad(beforeSeq), reverse: true, limit: 1 })) {
      return await this.envs.get(envKey)
    }
    return undefined
  }

  /**
   * One signer's newest ref observations of a repository (raw bytes, newest first), from its last
   * `window` log positions: bounded work per signer, whatever the signer flooded elsewhere.
   */
  async recentRefObservations (repoId: string, keyid: string, window: number): Promise<Bytes[]> {
    const prefix = repoId + SEP + keyid + SEP
    const keys: string[] = []
    for await (const envKey of this.logs.values({ gte: prefix, lt: prefix + '\xff', reverse: true, limit: window })) keys.push(envKey)
    const metas = await this.metas.getMany(keys)
    const refKeys = keys.filter((_, i) => metas[i]?.kind === 'ref')
    return (await this.envs.getMany(refKeys)).filter((b): b is Bytes => b !== undefined)
  }

  /** First-seen times of the given commits of a repository (undefined where unknown). */
  async commitInfos (repoId: string, commits: string[]): Promise<Array<CommitInfo | undefined>> {
    return await this.commits.getMany(commits.map(c => repoId + SEP + c))
  }

  /** Commits known for a repository, newest first by first-seen time. */
  async commitsOf (repoId: string, limit = 200): Promise<CommitInfo[]> {
    const out: CommitInfo[] = []
    for await (const v of this.commits.values({ gte: repoId + SEP, lt: repoId + SEP + '\xff' })) out.push(v)
    return out.sort((a, b) => b.firstSeen - a.firstSeen).slice(0, limit)
  }

  /** (repository, commit) pairs that some builder attested to this narSha256. */
  async commitsWithDigest (narSha256: string): Promise<Array<{ repoId: string, commit: string }>> {
    const seen = new Map<string, { repoId: string, commit: string }>()
    const prefix = narSha256 + SEP
    for await (const k of this.byDigest.keys({ gte: prefix, lt: prefix + '\xff' })) {
      const [, repoId, commit] = k.split(SEP)
      seen.set(repoId + SEP + commit, { repoId, commit })
    }
    return [...seen.values()]
  }

  async logHead (repoId: string, keyid: string): Promise<LogHead | undefined> {
    const prefix = repoId + SEP + keyid + SEP
    for await (const [k, v] of this.logs.iterator({ gte: prefix, lt: prefix + '\xff', reverse: true, limit: 1 })) {
      return { repoId, keyid, seq: Number(k.slice(prefix.length)), envelopeId: v.slice(0, v.indexOf(SEP)) }
    }
    return undefined
  }

  /**
   * Per (repository, signer) log: the end of its contiguous prefix (seq 0..n all present), which
   * is what sync asks peers to continue from, so a gap left by lost gossip is filled. Scanned from
   * the store once, then kept in memory and moved forward by every write.
   */
  async logHeads (): Promise<LogHead[]> {
    this.heads ??= await this.exclusive(async () => this.heads ?? await this.scanLogHeads())
    return [...this.heads.values()].map(h => ({ ...h }))
  }

  private async scanLogHeads (): Promise<Map<string, LogHead>> {
    const heads = new Map<string, LogHead>()
    const broken = new Set<string>()
    for await (const [k, v] of this.logs.iterator()) {
      const [repoId, keyid, seqText] = k.split(SEP)
      const log = repoId + SEP + keyid
      if (broken.has(log)) continue
      const seq = Number(seqText)
      const head = heads.get(log)
      if ((head === undefined && seq !== 0) || (head !== undefined && seq !== head.seq + 1)) {
        // A log without seq 0 has no contiguous prefix: it is left out, so peers send all of it.
        broken.add(log)
        continue
      }
      heads.set(log, { repoId, keyid, seq, envelopeId: v.slice(0, v.indexOf(SEP)) })
    }
    return heads
  }

  /**
   * Whether the signer's log is complete and linked from seq 0 up to `uptoSeq`: every position
   * present and each envelope's prev naming the one before it. The linked prefix found is kept
   * (in memory and, as a cache of the logs index, in the store) and extended from there by later
   * calls and by writes, so a lookup reads only what was not checked before, not the whole log.
   */
  async logComplete (repoId: string, keyid: string, uptoSeq: number): Promise<boolean> {
    const log = repoId + SEP + keyid
    let at = this.linked.get(log) ?? { seq: -1, id: null }
    if (at.seq >= uptoSeq) return true
    // the log does not reach uptoSeq yet (its highest stored position is known): nothing to read
    if ((this.maxSeq.get(log) ?? Infinity) < uptoSeq) return false
    // positions written out of order past the prefix, remembered by the writes: nothing to read either
    const later = this.linkedAhead.get(log)
    if (later !== undefined) {
      at = linkedThrough(at, later)
      if (at.seq >= uptoSeq) {
        this.linked.set(log, at)
        return true
      }
    }
    at = await this.extendLinked(repoId, keyid, at, uptoSeq)
    if (at.seq > (this.linked.get(log)?.seq ?? -1)) {
      this.linked.set(log, at)
      await this.linkedIndex.put(log, at) // a cache of what the logs index holds: no fsync needed
    }
    return at.seq >= uptoSeq
  }

  private async extendLinked (repoId: string, keyid: string, from: LinkedPrefix, uptoSeq: number): Promise<LinkedPrefix> {
    const prefix = repoId + SEP + keyid + SEP
    let at = from
    let keys: string[] = []
    const check = async (): Promise<boolean> => {
      const metas = await this.metas.getMany(keys)
      keys = []
      for (const meta of metas) {
        if (meta === undefined || meta.seq !== at.seq + 1 || (meta.prev !== undefined && meta.prev !== at.id)) return false
        at = { seq: meta.seq, id: meta.id }
      }
      return true
    }
    for await (const envKey of this.logs.values({ gte: prefix + pad(from.seq + 1), lte: prefix + pad(uptoSeq) })) {
      keys.push(envKey)
      if (keys.length >= 1000 && !await check()) return at
    }
    if (keys.length > 0) await check()
    return at
  }

  /**
   * Envelopes of one log with seq > afterSeq, in order, streamed; a fork's second envelope follows
   * the first. Read in chunks (two multi-gets per chunk, not two reads per envelope).
   */
  async *envelopesAfter (repoId: string, keyid: string, afterSeq: number): AsyncGenerator<Bytes> {
    const prefix = repoId + SEP + keyid + SEP
    const range = afterSeq < 0 ? { gte: prefix, lt: prefix + '\xff' } : { gt: prefix + pad(afterSeq), lt: prefix + '\xff' }
    let chunk = 16
    let logKeys: string[] = []
    let envKeys: string[] = []
    const read = async (): Promise<Bytes[]> => {
      const [envs, proofs] = await Promise.all([this.envs.getMany(envKeys), this.proofs.getMany(logKeys)])
      const forks = await this.envs.getMany(proofs.filter(p => p !== undefined).map(p => p!.b))
      const out: Bytes[] = []
      let f = 0
      envs.forEach((bytes, i) => {
        if (bytes !== undefined) out.push(bytes)
        if (proofs[i] !== undefined) { const other = forks[f++]; if (other !== undefined) out.push(other) }
      })
      logKeys = []
      envKeys = []
      return out
    }
    for await (const [logKey, envKey] of this.logs.iterator(range)) {
      logKeys.push(logKey)
      envKeys.push(envKey)
      if (logKeys.length >= chunk) {
        yield * await read()
        chunk = Math.min(chunk * 2, 512) // small first chunks: the first envelopes go out at once
      }
    }
    if (logKeys.length > 0) yield * await read()
  }

  async equivocationProofs (repoId?: string): Promise<EquivocationProof[]> {
    const out: EquivocationProof[] = []
    const range = repoId === undefined ? {} : { gte: repoId + SEP, lt: repoId + SEP + '\xff' }
    for await (const p of this.proofs.values(range)) {
      const [a, b] = await this.envs.getMany([p.a, p.b])
      if (a !== undefined && b !== undefined) out.push({ repoId: p.repoId, keyid: p.keyid, envelopes: [a, b], foundAt: p.foundAt })
    }
    return out
  }

  // --- build queue -------------------------------------------------------------------

  private jobKey (repoId: string, commit: string, recipeKey: string): string {
    return repoId + SEP + commit + SEP + recipeKey
  }

  async getJob (repoId: string, commit: string, recipeKey: string): Promise<BuildJob | undefined> {
    return await this.jobs.get(this.jobKey(repoId, commit, recipeKey))
  }

  /** Queues a build unless the build key is already known. Returns true when newly queued. */
  enqueueJob (job: Omit<BuildJob, 'state' | 'attempts' | 'notBefore'>, now = Date.now()): Promise<boolean> {
    return this.exclusive(async () => {
      const key = this.jobKey(job.repoId, job.commit, job.recipeKey)
      if (await this.jobs.get(key) !== undefined) return false
      const queued: BuildJob = { ...job, state: 'queued', attempts: 0, notBefore: now }
      await this.db.batch([
        { type: 'put', sublevel: this.jobs, key, value: queued },
        { type: 'put', sublevel: this.due, key: dueKey(queued, key), value: '' }
      ] as never, { sync: true })
      if (this.jobStateCounts !== undefined) this.jobStateCounts.queued++
      return true
    })
  }

  /** Writes a job's new state (fsync), keeping the due index in step. */
  updateJob (job: BuildJob): Promise<void> {
    return this.exclusive(async () => {
      const key = this.jobKey(job.repoId, job.commit, job.recipeKey)
      const old = await this.jobs.get(key)
      const ops: unknown[] = []
      if (old?.state === 'queued') ops.push({ type: 'del', sublevel: this.due, key: dueKey(old, key) })
      ops.push({ type: 'put', sublevel: this.jobs, key, value: job })
      if (job.state === 'queued') ops.push({ type: 'put', sublevel: this.due, key: dueKey(job, key), value: '' })
      await this.db.batch(ops as never, { sync: true })
      if (this.jobStateCounts !== undefined) {
        if (old !== undefined) this.jobStateCounts[old.state]--
        this.jobStateCounts[job.state]++
      }
    })
  }

  /** The queued job due first (lowest notBefore, then queuedAt) with notBefore ≤ now, read from the due index. */
  async nextDueJob (now: number): Promise<BuildJob | undefined> {
    for await (const k of this.due.keys({ lte: pad(now) + SEP + '\xff' })) {
      const job = await this.jobs.get(k.slice(k.indexOf(SEP, k.indexOf(SEP) + 1) + 1))
      if (job?.state === 'queued' && job.notBefore <= now) return job
    }
    return undefined
  }

  /** Jobs left `running` by a process that died go back to the queue (their attempt does not count). */
  async requeueInterrupted (): Promise<number> {
    let n = 0
    for (const job of await this.jobsList()) {
      if (job.state !== 'running') continue
      await this.updateJob({ ...job, state: 'queued', attempts: Math.max(0, job.attempts - 1) })
      n++
    }
    return n
  }

  /** Build jobs by state. */
  async jobCounts (): Promise<Record<BuildJobState, number>> {
    // Counted once (jobs are kept forever, so a scan grows with history), then kept in step by
    // enqueueJob and updateJob, which run one at a time with this first count.
    if (this.jobStateCounts === undefined) {
      await this.exclusive(async () => {
        if (this.jobStateCounts !== undefined) return
        const out: Record<BuildJobState, number> = { queued: 0, running: 0, succeeded: 0, failed: 0 }
        for await (const j of this.jobs.values()) out[j.state]++
        this.jobStateCounts = out
      })
    }
    return { ...this.jobStateCounts! }
  }

  async jobsList (): Promise<BuildJob[]> {
    const out: BuildJob[] = []
    for await (const j of this.jobs.values()) out.push(j)
    return out
  }

  /** Builds the due index once for a store written before it existed. */
  private async indexDueJobs (): Promise<void> {
    if (await this.state.get('dueIndex') === 1) return
    const ops: unknown[] = []
    for await (const [key, job] of this.jobs.iterator()) {
      if (job.state === 'queued') ops.push({ type: 'put', sublevel: this.due, key: dueKey(job, key), value: '' })
    }
    ops.push({ type: 'put', sublevel: this.state, key: 'dueIndex', value: 1 })
    await this.db.batch(ops as never, { sync: true })
  }

  // --- the watcher's memory of refs ---------------------------------------------------

  /** The last commit the watcher saw per ref of a repository. */
  async seenRefs (repoId: string): Promise<Record<string, string>> {
    return (await this.state.get(`refs/${repoId}`) as Record<string, string> | undefined) ?? {}
  }

  async rememberRefs (repoId: string, refs: Record<string, string>): Promise<void> {
    await this.state.put(`refs/${repoId}`, refs)
  }

  // --- node state and blobs ----------------------------------------------------------

  async getState<T> (key: string): Promise<T | undefined> {
    return await this.state.get(key) as T | undefined
  }

  async putState (key: string, value: unknown): Promise<void> {
    await this.state.put(key, value)
  }

  /**
   * Keeps a content-addressed blob (a file list, a complete build log): up to SMALL_BLOB_BYTES
   * inside the LevelDB, larger ones as a read-only file (`blobsDir/large/`), so a file list of
   * hundreds of thousands of files is never one huge LevelDB value and is served by range.
   */
  async putBlob (sha256: string, bytes: Bytes): Promise<void> {
    if (bytes.byteLength > SMALL_BLOB_BYTES) await this.largeBlobs.write(sha256, bytes)
    else await this.blobs.put(sha256, bytes)
  }

  /**
   * Keeps the complete file at `path` (on the blobs directory's filesystem: see blobTempPath) as
   * the blob `sha256`, moving it; the caller has checked the digest (the network layer, the
   * file-list writer). Large blobs never pass through memory.
   */
  async putBlobFile (sha256: string, path: string): Promise<void> {
    if ((await stat(path)).size > SMALL_BLOB_BYTES) { await this.largeBlobs.adopt(sha256, path); return }
    await this.blobs.put(sha256, await readFile(path))
    await rm(path, { force: true })
  }

  /** A fresh path for a blob being written or fetched, to hand to putBlobFile once complete. */
  async blobTempPath (): Promise<string> {
    return await this.largeBlobs.tempPath()
  }

  /** The whole blob in memory (small blobs, logs); large ones are better read with openBlob. */
  async getBlob (sha256: string): Promise<Bytes | undefined> {
    return await this.blobs.get(sha256) ?? await this.largeBlobs.get(sha256)
  }

  /** A blob opened for reading by range (served to peers and over HTTP without holding it whole). */
  async openBlob (sha256: string): Promise<BlobFileReader | undefined> {
    const small = await this.blobs.get(sha256)
    if (small !== undefined) return bytesBlobReader(small)
    return await this.largeBlobs.open(sha256)
  }

  async deleteBlob (sha256: string): Promise<void> {
    await this.blobs.del(sha256)
    await this.largeBlobs.remove(sha256)
  }

  // --- build logs, kept builds, private content --------------------------------------

  /**
   * Keeps a build's log under the digest its attestation signs: the kept bytes (the whole log,
   * or its head and tail when it outgrew the recipe's maxLogBytes) as a blob under their own
   * SHA-256, and what they are under `signedSha256`.
   */
  async putBuildLog (signedSha256: string, meta: BuildLogMeta, kept: Bytes): Promise<void> {
    await this.db.batch([
      { type: 'put', sublevel: this.blobs, key: meta.keptSha256, value: kept },
      { type: 'put', sublevel: this.buildLogs, key: signedSha256, value: meta }
    ] as never)
  }

  /** A kept build log by its signed digest. */
  async buildLog (signedSha256: string): Promise<{ meta: BuildLogMeta, bytes: Bytes } | undefined> {
    const meta = await this.buildLogs.get(signedSha256)
    if (meta === undefined) return undefined
    const bytes = await this.blobs.get(meta.keptSha256)
    return bytes === undefined ? undefined : { meta, bytes }
  }

  async deleteBuildLog (signedSha256: string): Promise<void> {
    const meta = await this.buildLogs.get(signedSha256)
    if (meta === undefined) return
    await this.db.batch([
      { type: 'del', sublevel: this.blobs, key: meta.keptSha256 },
      { type: 'del', sublevel: this.buildLogs, key: signedSha256 }
    ] as never)
  }

  /** Records a build whose outputs this node keeps (for retention). */
  async putKeptBuild (k: KeptBuild): Promise<void> {
    await this.kept.put(pad(k.keptAt) + SEP + k.repoId + SEP + k.commit + SEP + (k.logSha256 ?? k.fileListSha256 ?? ''), k)
  }

  /** Kept builds, oldest first, each with the key forgetKept takes. */
  async *keptBuilds (): AsyncGenerator<{ key: string, build: KeptBuild }> {
    for await (const [key, build] of this.kept.iterator()) yield { key, build }
  }

  async forgetKept (key: string): Promise<void> {
    await this.kept.del(key)
  }

  /**
   * Marks content (file lists, output files, logs) as a private repository's: served only with
   * a read token, unless a public build produced it too (see markPublic).
   */
  async markPrivate (sha256s: string[]): Promise<void> {
    const keys = [...new Set(sha256s)]
    const marks = await this.privateBlobs.getMany(keys)
    const ops = keys.filter((_, i) => marks[i] !== 'public').map(key => ({ type: 'put' as const, key, value: 'private' }))
    if (ops.length > 0) await this.privateBlobs.batch(ops)
  }

  /** Content a public build produced is public, whoever else has it. */
  async markPublic (sha256s: string[]): Promise<void> {
    if (sha256s.length === 0) return
    await this.privateBlobs.batch([...new Set(sha256s)].map(key => ({ type: 'put' as const, key, value: 'public' })))
  }

  async isPrivate (sha256: string): Promise<boolean> {
    return await this.privateBlobs.get(sha256) === 'private'
  }

  /** Removes a kept output file (retention). */
  async deleteOutputFile (sha256: string): Promise<void> {
    await this.outputs.del(sha256)
    await this.blobFiles.remove(sha256)
  }

  // --- output files (content-addressed) ------------------------------------------------

  /**
   * Keeps the output file at `source` under its sha256 (as the build's file list names it):
   * small files inside the LevelDB, larger ones as read-only files in the blobs directory.
   * A small file whose content does not hash to `sha256` is refused.
   */
  async putOutputFile (sha256: string, source: string): Promise<void> {
    const [failed] = await this.putOutputFiles([{ sha256, source }])
    if (failed !== undefined) throw failed.error
  }

  /**
   * Keeps many output files at once (a build's output): like putOutputFile for each, with the
   * small ones written OUTPUT_BATCH to a LevelDB batch and looked up in one getMany, instead of
   * one put and two lookups per file (an output of 100,000 small files). Returns the files that
   * could not be kept, with why; the others are kept.
   */
  async putOutputFiles (files: Iterable<{ sha256: string, source: string }>): Promise<Array<{ sha256: string, source: string, error: Error }>> {
    const failed: Array<{ sha256: string, source: string, error: Error }> = []
    const seen = new Set<string>()
    const batches = function * (): Generator<Array<{ sha256: string, source: string }>> {
      let part: Array<{ sha256: string, source: string }> = []
      for (const f of files) {
        if (seen.has(f.sha256)) continue
        seen.add(f.sha256)
        part.push(f)
        if (part.length === OUTPUT_BATCH) { yield part; part = [] }
      }
      if (part.length > 0) yield part
    }
    for (const part of batches()) {
      const kept = await this.outputs.getMany(part.map(f => f.sha256))
      const ops: Array<{ type: 'put', key: string, value: Bytes }> = []
      const large: typeof part = []
      // Small files are read synchronously (one open, fstat, read, close each: microseconds, where
      // a round trip through libuv's pool costs tens of them); a batch of 512 holds the event loop
      // for a few milliseconds, and it gets a turn at every batch write.
      for (const [i, f] of part.entries()) {
        if (kept[i] !== undefined) continue
        try {
          const bytes = readSmallFile(f.source)
          if (bytes === undefined) { large.push(f); continue }
          if (sha256Hex(bytes) !== f.sha256) throw new QuorateError('STORE_FAILED', `${f.source} does not hash to ${f.sha256}; the output changed after it was hashed`, { sha256: f.sha256 })
          ops.push({ type: 'put', key: f.sha256, value: bytes })
        } catch (err) {
          failed.push({ ...f, error: err as Error })
        }
      }
      if (ops.length > 0) await this.outputs.batch(ops)
      for (const f of large) {
        try {
          if (!await this.blobFiles.has(f.sha256)) await this.blobFiles.put(f.sha256, f.source)
        } catch (err) {
          failed.push({ ...f, error: err as Error })
        }
      }
    }
    return failed
  }

  async hasOutputFile (sha256: string): Promise<boolean> {
    return await this.outputs.get(sha256) !== undefined || await this.blobFiles.has(sha256)
  }

  /** An output file by sha256, or undefined when this store does not keep it. */
  async getOutputFile (sha256: string): Promise<Bytes | undefined> {
    return await this.outputs.get(sha256) ?? await this.blobFiles.get(sha256)
  }
}

export const STORE_FORMAT = 1

/** A linked prefix moved on through the positions remembered past it, as long as each links to the one before. */
function linkedThrough (from: LinkedPrefix, later: ReadonlyMap<number, { id: string, prev?: string | null }>): LinkedPrefix {
  let at = from
  for (let next = later.get(at.seq + 1); next !== undefined && (next.prev === undefined || next.prev === at.id); next = later.get(at.seq + 1)) at = { seq: at.seq + 1, id: next.id }
  return at
}

/** The bytes of a file up to SMALL_BLOB_BYTES, or undefined when it is larger. */
function readSmallFile (path: string): Bytes | undefined {
  const fd = openSync(path, 'r')
  try {
    const size = fstatSync(fd).size
    if (size > SMALL_BLOB_BYTES) return undefined
    const buf = Buffer.allocUnsafe(size)
    let got = 0
    while (got < size) {
      const n = readSync(fd, buf, got, size - got, got)
      if (n === 0) break
      got += n
    }
    return buf.subarray(0, got)
  } finally {
    closeSync(fd)
  }
}

function dueKey (job: BuildJob, jobKey: string): string {
  return pad(Math.min(job.notBefore, Number.MAX_SAFE_INTEGER)) + SEP + pad(job.queuedAt) + SEP + jobKey
}

const EMPTY = new Uint8Array(0)
/** A value as the sublevels' 'utf8' and 'json' encodings write it, for batches written at the root. */
const utf8 = (s: string): Uint8Array => Buffer.from(s, 'utf8')
const json = (v: unknown): Uint8Array => Buffer.from(JSON.stringify(v), 'utf8')

function metaOf (v: VerifiedAttestation, now: number): StoredEnvelopeMeta {
  const a = v.attestation
  return {
    id: v.id,
    keyid: v.keyid,
    builder: v.builder,
    org: v.org,
    repoId: a.repoId,
    commit: a.commit,
    kind: a.kind,
    seq: a.log.seq,
    prev: a.log.prev,
    ref: a.ref,
    ...(a.kind === 'build' ? { narSha256: a.narSha256 } : {}),
    receivedAt: now
  }
}

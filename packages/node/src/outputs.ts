import { existsSync, readdirSync, rmSync } from 'node:fs'
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import { createHash } from 'node:crypto'
import { isSha256Hex } from '@quorate/core'
import type { BlobFileReader, Store } from '@quorate/store'
import type { Network } from '@quorate/network'
import type { Logger } from './logger.js'

export interface OutputsComponents {
  store: Pick<Store, 'putBlob' | 'getBlob' | 'putBlobFile' | 'blobTempPath' | 'openBlob' | 'putOutputFile' | 'putOutputFiles' | 'getOutputFile' | 'putBuildLog' | 'buildLog' | 'putKeptBuild' | 'markPrivate' | 'markPublic' | 'isPrivate'>
  /** Repositories whose outputs, logs and file lists are served only with a read token (node config `private`). */
  privateRepos?: ReadonlySet<string>
  /** Peers that may hold a file list this node lacks. */
  network?: Pick<Network, 'fetchBlob' | 'fetchBlobFile'>
  /** Largest file list fetched from peers (node config maxFileListBytes; default 1 GiB). */
  maxFileListBytes?: number
  logger: Logger
}

/** What a successful build leaves to keep: its file list and the copied output files. */
export interface BuiltOutput {
  fileListSha256: string
  /** The file list's bytes, or (for large outputs) the file they were written to, moved into the store by keep. */
  fileListBytes?: Uint8Array
  fileListPath?: string
  files: Array<{ path: string, type: string, sha256?: string }>
  /** A copy of the output directory made by the build runner. */
  copyDir: string
}

/** A build's log as the runner captured it (see @quorate/builder CapturedLog). */
export interface BuiltLog {
  sha256: string
  complete: boolean
  kept: Uint8Array
  totalBytes: number
}

/** A kept build log: its bytes and whether they are the whole log (then they hash to the signed digest). */
export interface KeptLog {
  bytes: Uint8Array
  complete: boolean
  totalBytes: number
  repoId?: string
  commit?: string
}

/**
 * Keeps build outputs so auditors can fetch any builder's output by the hashes in its signed
 * file list: file lists and output files go into the store's content-addressed blob store
 * (DESIGN.md "Builds"), never served from a build directory.
 */
export interface Outputs {
  /** Moves output files that releases before the blob store kept in `dir` (dataDir/files) into it, then removes `dir`. */
  adoptLegacyFiles: (dir: string) => Promise<number>
  keep: (o: BuiltOutput) => Promise<void>
  /**
   * Keeps what one build of this node leaves (its log always; its file list and output files
   * when it succeeded), marks it private for a private repository, and records it for retention.
   */
  keepBuild: (b: { repoId: string, commit: string, log: BuiltLog, output?: BuiltOutput & { narSha256: string } }) => Promise<void>
  /**
   * A build log by the digest its attestation signed: this node's own, or (when `fromPeers`)
   * a complete log any peer holds (checked against the digest by the network layer).
   */
  log: (sha256: string, opts?: { fromPeers?: boolean }) => Promise<KeptLog | undefined>
  /** Whether content is a private repository's (served only with a read token). */
  isPrivate: (sha256: string) => Promise<boolean>
  /** What the blob protocol serves to peers, read by range: file lists and complete logs, never private content. */
  openPublicBlob: (sha256: string) => Promise<BlobFileReader | undefined>
  /** A file list by digest, from the store or (when `fromPeers`) any peer holding it (checked by the network layer). */
  fileList: (sha256: string, opts?: { fromPeers?: boolean }) => Promise<Uint8Array | undefined>
  /**
   * A file list (or any kept blob) opened for reading by range, from the store or (when
   * `fromPeers`) fetched from a peer into the store first, streamed to disk and checked there:
   * a file list of any size up to maxFileListBytes passes through memory a range at a time.
   */
  openFileList: (sha256: string, opts?: { fromPeers?: boolean }) => Promise<BlobFileReader | undefined>
  /** An output file by its sha256, or undefined when this node does not keep it. */
  file: (sha256: string) => Promise<Uint8Array | undefined>
}

export function outputs (c: OutputsComponents): Outputs {
  const { store, logger } = c
  const privateRepos = c.privateRepos ?? new Set<string>()
  async function keep (o: BuiltOutput): Promise<void> {
    if (o.fileListPath !== undefined) await store.putBlobFile(o.fileListSha256, o.fileListPath)
    else if (o.fileListBytes !== undefined) await store.putBlob(o.fileListSha256, o.fileListBytes)
    // In batches (store.putOutputFiles): one LevelDB put per file made keeping an output of
    // 100,000 small files a phase of its own. Their paths are made one batch at a time.
    function * files (): Generator<{ sha256: string, source: string }> {
      for (const f of o.files) if (f.type === 'file' && f.sha256 !== undefined) yield { sha256: f.sha256, source: join(o.copyDir, f.path) }
    }
    for (const f of await store.putOutputFiles(files())) {
      logger.warn('output not kept', { path: f.source.slice(o.copyDir.length + 1), error: f.error.message })
    }
  }
  /** A blob from the store or, when `fromPeers`, from any peer holding it (checked by the network layer), then kept. */
  async function blobOf (sha256: string, fromPeers: boolean): Promise<Uint8Array | undefined> {
    let blob = await store.getBlob(sha256)
    if (blob === undefined && fromPeers && c.network !== undefined) {
      blob = await c.network.fetchBlob(sha256, { timeoutMs: 10_000 })
      if (blob !== undefined) await store.putBlob(sha256, blob)
    }
    return blob
  }
  /** Fetches in flight, by digest: two requests for one missing file list share one download. */
  const fetching = new Map<string, Promise<boolean>>()
  async function fetchIntoStore (sha256: string): Promise<boolean> {
    const network = c.network
    if (network === undefined) return false
    let pending = fetching.get(sha256)
    if (pending === undefined) {
      pending = (async () => {
        const tmp = await store.blobTempPath()
        const size = await network.fetchBlobFile(sha256, tmp, { timeoutMs: 10_000, ...(c.maxFileListBytes !== undefined ? { maxBytes: c.maxFileListBytes } : {}) })
        if (size === undefined) return false
        await store.putBlobFile(sha256, tmp)
        return true
      })().finally(() => fetching.delete(sha256))
      fetching.set(sha256, pending)
    }
    return await pending
  }
  return {
    async adoptLegacyFiles (dir) {
      if (!existsSync(dir)) return 0
      let adopted = 0
      for (const name of readdirSync(dir)) {
        if (!isSha256Hex(name)) continue
        try {
          await store.putOutputFile(name, join(dir, name))
          adopted++
        } catch (err) {
          logger.warn('old output file not adopted', { file: name, error: (err as Error).message })
        }
      }
      rmSync(dir, { recursive: true, force: true })
      if (adopted > 0) logger.info('output files moved into the blob store', { files: adopted, from: dir })
      return adopted
    },
    keep,
    async keepBuild ({ repoId, commit, log, output }) {
      const now = Date.now()
      const keptSha256 = log.complete ? log.sha256 : createHash('sha256').update(log.kept).digest('hex')
      await store.putBuildLog(log.sha256, { repoId, commit, complete: log.complete, keptSha256, totalBytes: log.totalBytes, keptAt: now }, log.kept)
      let bytes = log.kept.byteLength
      const content = [log.sha256, keptSha256]
      if (output !== undefined) {
        bytes += output.fileListBytes?.byteLength ?? (output.fileListPath !== undefined ? (await stat(output.fileListPath)).size : 0)
        await keep(output)
        content.push(output.fileListSha256)
        for (const f of output.files) {
          if (f.type !== 'file' || f.sha256 === undefined) continue
          content.push(f.sha256)
          bytes += (f as { size?: number }).size ?? 0
        }
      }
      // Content a public build produced is public, even when a private repository has it too.
      if (privateRepos.has(repoId)) await store.markPrivate(content)
      else if (privateRepos.size > 0) await store.markPublic(content)
      await store.putKeptBuild({ repoId, commit, keptAt: now, narSha256: output?.narSha256, fileListSha256: output?.fileListSha256, logSha256: log.sha256, bytes })
    },
    async log (sha256, opts = {}) {
      const own = await store.buildLog(sha256)
      if (own !== undefined) return { bytes: own.bytes, complete: own.meta.complete, totalBytes: own.meta.totalBytes, repoId: own.meta.repoId, commit: own.meta.commit }
      // A complete log another node kept travels like a file list: by content address.
      const blob = await blobOf(sha256, opts.fromPeers === true)
      return blob === undefined ? undefined : { bytes: blob, complete: true, totalBytes: blob.byteLength }
    },
    async isPrivate (sha256) {
      return privateRepos.size > 0 && await store.isPrivate(sha256)
    },
    async openPublicBlob (sha256) {
      if (privateRepos.size > 0 && await store.isPrivate(sha256)) return undefined
      return await store.openBlob(sha256)
    },
    async fileList (sha256, opts = {}) {
      return await blobOf(sha256, opts.fromPeers === true)
    },
    async openFileList (sha256, opts = {}) {
      const kept = await store.openBlob(sha256)
      if (kept !== undefined || opts.fromPeers !== true) return kept
      return await fetchIntoStore(sha256) ? await store.openBlob(sha256) : undefined
    },
    async file (sha256) {
      return await store.getOutputFile(sha256)
    }
  }
}

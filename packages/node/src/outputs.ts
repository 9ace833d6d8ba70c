import { existsSync, readdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { isSha256Hex } from '@quorate/core'
import type { Store } from '@quorate/store'
import type { Network } from '@quorate/network'
import type { Logger } from './logger.js'

export interface OutputsComponents {
  store: Pick<Store, 'putBlob' | 'getBlob' | 'putOutputFile' | 'getOutputFile'>
  /** Peers that may hold a file list this node lacks. */
  network?: Pick<Network, 'fetchBlob'>
  logger: Logger
}

/** What a successful build leaves to keep: its file list and the copied output files. */
export interface BuiltOutput {
  fileListSha256: string
  fileListBytes: Uint8Array
  files: Array<{ path: string, type: string, sha256?: string }>
  /** A copy of the output directory made by the build runner. */
  copyDir: string
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
  /** A file list by digest, from the store or (when `fromPeers`) any peer holding it (checked by the network layer). */
  fileList: (sha256: string, opts?: { fromPeers?: boolean }) => Promise<Uint8Array | undefined>
  /** An output file by its sha256, or undefined when this node does not keep it. */
  file: (sha256: string) => Promise<Uint8Array | undefined>
}

export function outputs (c: OutputsComponents): Outputs {
  const { store, logger } = c
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
    async keep (o) {
      await store.putBlob(o.fileListSha256, o.fileListBytes)
      for (const f of o.files) {
        if (f.type !== 'file' || f.sha256 === undefined) continue
        try {
          await store.putOutputFile(f.sha256, join(o.copyDir, f.path))
        } catch (err) {
          logger.warn('output not kept', { path: f.path, error: (err as Error).message })
        }
      }
    },
    async fileList (sha256, opts = {}) {
      let blob = await store.getBlob(sha256)
      if (blob === undefined && opts.fromPeers === true && c.network !== undefined) {
        blob = await c.network.fetchBlob(sha256, { timeoutMs: 10_000 })
        if (blob !== undefined) await store.putBlob(sha256, blob)
      }
      return blob
    },
    async file (sha256) {
      return await store.getOutputFile(sha256)
    }
  }
}

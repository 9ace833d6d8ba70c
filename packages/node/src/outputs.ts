import { mkdirSync, existsSync, linkSync, copyFileSync, chmodSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Store } from '@quorate/store'
import type { Network } from '@quorate/network'
import type { Logger } from './logger.js'

export interface OutputsComponents {
  store: Pick<Store, 'putBlob' | 'getBlob'>
  /** Peers that may hold a file list this node lacks. */
  network?: Pick<Network, 'fetchBlob'>
  /** Where output files are kept, content-addressed. */
  filesDir: string
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
 * file list: file lists in the store's blobs, output files content-addressed and read-only.
 */
export interface Outputs {
  keep: (o: BuiltOutput) => Promise<void>
  /** A file list by digest, from the store or (when `fromPeers`) any peer holding it (checked by the network layer). */
  fileList: (sha256: string, opts?: { fromPeers?: boolean }) => Promise<Uint8Array | undefined>
  /** An output file by its sha256, or undefined when this node does not keep it. */
  file: (sha256: string) => Promise<Uint8Array | undefined>
}

export function outputs (c: OutputsComponents): Outputs {
  const { store, filesDir, logger } = c
  return {
    async keep (o) {
      await store.putBlob(o.fileListSha256, o.fileListBytes)
      mkdirSync(filesDir, { recursive: true })
      for (const f of o.files) {
        if (f.type !== 'file' || f.sha256 === undefined) continue
        const dest = join(filesDir, f.sha256)
        if (existsSync(dest)) continue
        const src = join(o.copyDir, f.path)
        try {
          try { linkSync(src, dest) } catch { copyFileSync(src, dest) }
          chmodSync(dest, 0o444)
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
      try { return await readFile(join(filesDir, sha256)) } catch { return undefined }
    }
  }
}

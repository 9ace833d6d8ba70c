import { mkdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'

/**
 * The layout of a node's data directory, in one place. Everything else asks this module for a
 * path instead of joining names itself, so a change of layout (and the backup's list of parts)
 * happens here only.
 *
 * ```
 * dataDir/
 *   db/        the store (LevelDB): envelopes, indexes, logs, proofs, build queue, and file
 *              lists and output files up to 64 KiB
 *   blobs/     the store's larger output files, content-addressed (blobs/<2 hex>/<62 hex>, read-only);
 *              blobs/large/ file lists and logs over 64 KiB, likewise (served by range)
 *   git/       bare git mirrors, one per repository (re-fetched when removed)
 *   work/      the node's scratch space (output copies; emptied at every start). Builds' work
 *              directories live in the build area (builder's prepareBuildArea): here when the
 *              node does not drop privileges, else outside the data directory
 *   NEW_KEY    written by `quorate init`: this directory starts a new key's logs
 * ```
 */
export interface DataDir {
  readonly root: string
  /** The LevelDB store. */
  readonly db: string
  /** Content-addressed output files, owned by the store. */
  readonly blobs: string
  /** Where releases before the blob store kept output files (moved into the store at start). */
  readonly legacyFiles: string
  /** The bare git mirror of one repository. */
  gitMirror: (repoId: string) => string
  /** Build scratch space. */
  readonly work: string
}

/** The parts of a data directory that a backup holds (mirrors and scratch space are re-created). */
export const BACKUP_PARTS = ['db', 'blobs', 'files'] as const

export function dataDirLayout (root: string): DataDir {
  return {
    root,
    db: join(root, 'db'),
    blobs: join(root, 'blobs'),
    legacyFiles: join(root, 'files'),
    gitMirror: (repoId: string) => join(root, 'git', `${repoId}.git`),
    work: join(root, 'work')
  }
}

/** Creates the data directory (owner only) and empties the build scratch space left by a previous run. */
export function prepareDataDir (dir: DataDir): void {
  mkdirSync(dir.root, { recursive: true, mode: 0o700 })
  rmSync(dir.work, { recursive: true, force: true })
}

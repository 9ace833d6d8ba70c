import { statfs } from 'node:fs/promises'
import { QuorateError, isQuorateError } from '@quorate/core'

/**
 * Problems of the node, never of the build: the node's disk or quota full, I/O errors, a
 * read-only file system, no memory or descriptors left. A build that meets one is not signed
 * as failed (another node would have built it); the node pauses the job and runs it again when
 * the condition clears (DESIGN "Builds").
 */
const NODE_ERRNOS = new Set(['ENOSPC', 'EDQUOT', 'EIO', 'EROFS', 'ENOMEM', 'EMFILE', 'ENFILE'])

const WORDS: Record<string, string> = {
  ENOSPC: "the node's disk is full",
  EDQUOT: "the node's disk quota is used up",
  EIO: "the node's disk reported an I/O error",
  EROFS: "the node's file system is read-only",
  ENOMEM: 'the node is out of memory',
  EMFILE: 'the node has no file descriptors left',
  ENFILE: 'the host has no file descriptors left'
}

/** Whether `err` is the node's own trouble (an errno above, a NODE_TROUBLE error, or git saying so). */
export function isNodeTrouble (err: unknown): boolean {
  // A build root that cannot be pulled or verified is the node's trouble too (DESIGN "Build root").
  if (isQuorateError(err, 'NODE_TROUBLE') || isQuorateError(err, 'ROOT_UNAVAILABLE')) return true
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  if (typeof code === 'string' && NODE_ERRNOS.has(code)) return true
  const message = err instanceof Error ? err.message : ''
  return /No space left on device|Disk quota exceeded|Input\/output error|Read-only file system/.test(message)
}

/** A NODE_TROUBLE error saying what happened, during what, and that the job will run again. */
export function nodeTrouble (err: unknown, during: string): QuorateError {
  if (isQuorateError(err, 'NODE_TROUBLE') || isQuorateError(err, 'ROOT_UNAVAILABLE')) return err
  const code = (err as NodeJS.ErrnoException | undefined)?.code ?? ''
  const what = WORDS[code] ?? `the node failed (${err instanceof Error ? err.message : String(err)})`
  return new QuorateError('NODE_TROUBLE',
    `${what} while ${during}; this is the node's problem, not the build's: nothing was signed, and the build runs again once it is fixed (free disk space, check the disk)`,
    { errno: code, during }, { cause: err })
}

/** Free bytes for an unprivileged writer on the file system holding `dir`. */
export async function freeBytes (dir: string): Promise<number> {
  const s = await statfs(dir)
  return Number(s.bavail) * Number(s.bsize)
}

/**
 * The headroom a build needs on the node's disk: its own work-directory quota (maxOutputBytes,
 * enforced while it runs) plus a reserve for the watchdog's reaction time and the node's store.
 */
export function diskNeededForBuild (maxOutputBytes: number): number {
  return maxOutputBytes + Math.max(512 * 1024 * 1024, Math.floor(maxOutputBytes / 10))
}

/** Throws NODE_TROUBLE unless `dir`'s file system has room for a build with this quota. */
export async function assertRoomForBuild (dir: string, maxOutputBytes: number): Promise<void> {
  const free = await freeBytes(dir)
  const needed = diskNeededForBuild(maxOutputBytes)
  if (free < needed) {
    throw new QuorateError('NODE_TROUBLE',
      `the node's disk has ${mib(free)} free under ${dir}, and a build may write up to ${mib(maxOutputBytes)} (its work-directory quota, the recipe's maxOutputBytes) plus a reserve of ${mib(needed - maxOutputBytes)}; free disk space (or set a lower maxOutputBytes): the build waits and runs when there is room`,
      { errno: 'ENOSPC', during: 'checking disk space', free, needed })
  }
}

/** Whether the disk is (nearly) full now: a build failing on such a disk is not the build's fault. */
export async function diskNearlyFull (dir: string): Promise<boolean> {
  try {
    return await freeBytes(dir) < 16 * 1024 * 1024
  } catch {
    return false
  }
}

function mib (bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(0)} MiB`
}

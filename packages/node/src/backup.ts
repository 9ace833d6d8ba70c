import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync, mkdtempSync, rmSync, renameSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { QuorateError } from '@quorate/core'
import { Store, STORE_FORMAT } from '@quorate/store'
import { BACKUP_PARTS, dataDirLayout } from './data-dir.js'

/**
 * What a backup holds: the store (envelopes, logs, queue, file lists, small outputs) and its
 * larger content-addressed output files; `files` is where older releases kept outputs.
 */
const PARTS: readonly string[] = BACKUP_PARTS
const MANIFEST = 'quorate-backup.json'

/**
 * Opens the store of a stopped node's data directory for a maintenance command (backup, restore,
 * key rotation); when a node holds it, says which command to stop first (`verb`: what the user wanted).
 */
export async function openStoppedStore (dataDir: string, verb: string): Promise<Store> {
  const dir = dataDirLayout(dataDir)
  try {
    return await Store.open(dir.db, { blobsDir: dir.blobs })
  } catch (err) {
    if ((err as QuorateError).code === 'STORE_LOCKED') throw new QuorateError('STORE_LOCKED', `a node is running on ${dataDir}; stop it before you ${verb} (a copy of a live LevelDB directory is not consistent)`)
    throw err
  }
}

async function assertStopped (dataDir: string, verb: string): Promise<void> {
  if (!existsSync(dataDirLayout(dataDir).db)) return
  await (await openStoppedStore(dataDir, verb)).close()
}

/**
 * Writes a consistent backup of a stopped node's data directory as a gzip'd tar with a
 * manifest (store format, time). Git mirrors and scratch space are left out: they are re-fetched.
 * Keys are not included: back them up separately, offline.
 */
export async function backupDataDir (dataDir: string, outFile: string): Promise<{ parts: string[], bytes: number }> {
  await assertStopped(dataDir, 'back it up')
  const parts = PARTS.filter(p => existsSync(join(dataDir, p)))
  if (!parts.includes('db')) throw new QuorateError('NOT_FOUND', `${dataDir} holds no store (db/); is this the node's "dataDir"?`)
  const staging = mkdtempSync(join(dirname(outFile), '.quorate-backup-'))
  try {
    writeFileSync(join(staging, MANIFEST), JSON.stringify({ type: 'quorate-backup', version: 1, storeFormat: STORE_FORMAT, createdAt: new Date().toISOString(), parts }, null, 2))
    execFileSync('tar', ['-czf', outFile + '.partial', '-C', staging, MANIFEST, '-C', dataDir, ...parts], { stdio: ['ignore', 'ignore', 'pipe'] })
    renameSync(outFile + '.partial', outFile)
  } finally {
    rmSync(staging, { recursive: true, force: true })
  }
  return { parts, bytes: readFileSync(outFile).byteLength }
}

/** Restores a backup into a stopped node's data directory; refuses to overwrite a store unless forced. */
export async function restoreDataDir (dataDir: string, backupFile: string, force: boolean): Promise<{ parts: string[] }> {
  await assertStopped(dataDir, 'restore into it')
  if (existsSync(join(dataDir, 'db')) && readdirSync(join(dataDir, 'db')).length > 0 && !force) {
    throw new QuorateError('USAGE', `${dataDir}/db already holds a store; pass --force to replace it with the backup (the current one is moved aside, not deleted)`)
  }
  mkdirSync(dataDir, { recursive: true, mode: 0o700 })
  const staging = mkdtempSync(join(dataDir, '.restore-'))
  try {
    try {
      execFileSync('tar', ['-xzf', backupFile, '-C', staging, '--no-same-owner', '--no-same-permissions'], { stdio: ['ignore', 'ignore', 'pipe'] })
    } catch (err) {
      throw new QuorateError('CONFIG_INVALID', `${backupFile}: not a readable backup (${String((err as { stderr?: Buffer }).stderr ?? (err as Error).message).trim()}); make one with "quorate backup"`)
    }
    let manifest: { type?: string, storeFormat?: number, parts?: string[] }
    try { manifest = JSON.parse(readFileSync(join(staging, MANIFEST), 'utf8')) } catch { manifest = {} }
    if (manifest.type !== 'quorate-backup' || !Array.isArray(manifest.parts)) throw new QuorateError('CONFIG_INVALID', `${backupFile}: not a Quorate backup (no ${MANIFEST}); make one with "quorate backup"`)
    if (manifest.storeFormat !== STORE_FORMAT) throw new QuorateError('STORE_FAILED', `${backupFile}: store format ${String(manifest.storeFormat)}, this release reads format ${STORE_FORMAT}; restore it with the release that wrote it`)
    const stamp = new Date().toISOString().replace(/[:.]/g, '-')
    for (const part of manifest.parts.filter(p => PARTS.includes(p))) {
      if (existsSync(join(dataDir, part))) renameSync(join(dataDir, part), join(dataDir, `${part}.before-restore-${stamp}`))
      renameSync(join(staging, part), join(dataDir, part))
    }
    // Open once to prove the restored store is readable. The backup may be older than the key's
    // logs: the node must fetch them back from its peers before it signs again (it says so).
    const store = await Store.open(join(dataDir, 'db'))
    await store.putState('ownlog:recover', true)
    await store.close()
    return { parts: manifest.parts }
  } finally {
    rmSync(staging, { recursive: true, force: true })
  }
}

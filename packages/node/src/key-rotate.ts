import { existsSync, renameSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { dirname, join } from 'node:path'
import {
  QuorateError, encodeBuilderKeyFile, keyPairFromSeed, parseEnvelope, parseJsonStrict,
  type BuilderKeyPair, type Policy
} from '@quorate/core'
import { openStoppedStore } from './backup.js'
import { ownLog } from './own-log.js'
import { HELD } from './own-log-recovery.js'

export interface RotationResult {
  oldKeyid: string
  newKey: BuilderKeyPair
  retiredKeyFile: string
  resigned: number
  /** The builder's policy entry as the other members must adopt it (old key kept, then revoked). */
  policyEntry: { name: string, org: string, endpoint?: string, keys: Array<{ publicKey: string, revoked?: boolean }> }
}

function setLog (statement: Record<string, unknown>, log: { seq: number, prev: string | null }): void {
  const predicate = statement.predicate as Record<string, any>
  if (predicate.runDetails?.metadata !== undefined) predicate.runDetails.metadata.quorate_log = log
  else predicate.quorate_log = log
}

/**
 * Rotates a stopped node's builder key: writes a new key, keeps the old one as a retired file,
 * and re-signs every stored result of the old key under the new one as a new log (same
 * statements, new log positions), so the builder keeps its history under its new key.
 */
export async function rotateBuilderKey (opts: { dataDir: string, keyFile: string, oldKey: BuilderKeyPair, policy: Policy }): Promise<RotationResult> {
  const { oldKey, policy } = opts
  const member = policy.keys.get(oldKey.keyid)
  if (member === undefined) throw new QuorateError('KEY_INVALID', `${opts.keyFile}: this key is not in the policy, so there is no builder identity to rotate`)
  const store = await openStoppedStore(opts.dataDir, 'rotate its key').catch((err: QuorateError) => {
    throw err.code === 'STORE_LOCKED' ? new QuorateError('STORE_LOCKED', `the node is running on ${opts.dataDir}; stop it first, then rotate its key`) : err
  })
  const newKey = keyPairFromSeed(new Uint8Array(randomBytes(32)))
  const retiredKeyFile = join(dirname(opts.keyFile), `builder-key.${oldKey.keyid.slice(0, 16)}.retired.json`)
  let resigned = 0
  try {
    const idMap = new Map<string, string>()
    // The new key's log is written by the one own-log writer, as the node would: the key is not
    // in the policy yet, so the builder identity is given.
    const log = ownLog({ store, key: newKey, policy, identity: { builder: member.builder, org: member.org } })
    for (const repoId of policy.repositories.keys()) {
      const old: Uint8Array[] = []
      for await (const bytes of store.envelopesAfter(repoId, oldKey.keyid, -1)) old.push(bytes)
      for (const bytes of old) {
        const parsed = parseEnvelope(parseJsonStrict(Buffer.from(bytes).toString('utf8'), 'stored envelope'))
        if (parsed.keyid !== oldKey.keyid) continue
        const statement = JSON.parse(Buffer.from(parsed.payloadBytes).toString('utf8')) as Record<string, unknown>
        const signed = await log.append(repoId, position => { setLog(statement, position); return statement })
        idMap.set(parsed.id, signed.id)
        resigned++
      }
    }
    for (const job of await store.jobsList()) {
      const replaced = job.envelopeId !== undefined ? idMap.get(job.envelopeId) : undefined
      if (replaced !== undefined) await store.updateJob({ ...job, envelopeId: replaced })
    }
    // The new key's logs start in this store: the node need not fetch them from peers.
    await store.putState(HELD(newKey.keyid), newKey.keyid)
  } finally {
    await store.close()
  }
  if (existsSync(retiredKeyFile)) throw new QuorateError('KEY_INVALID', `${retiredKeyFile} already exists; move it away first`)
  renameSync(opts.keyFile, retiredKeyFile)
  writeFileSync(opts.keyFile, JSON.stringify(encodeBuilderKeyFile(newKey), null, 2) + '\n', { mode: 0o600 })
  const b = policy.builders.get(member.builder)!
  return {
    oldKeyid: oldKey.keyid,
    newKey,
    retiredKeyFile,
    resigned,
    policyEntry: { name: b.name, org: b.org, ...(b.endpoint !== undefined ? { endpoint: b.endpoint } : {}), keys: [...b.keys.map(k => k.publicKey === oldKey.publicKeyHex ? { publicKey: k.publicKey, revoked: true } : k), { publicKey: newKey.publicKeyHex }] }
  }
}

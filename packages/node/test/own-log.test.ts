import { describe, it, expect, afterEach } from 'vitest'
import { parseAttestation, parseEnvelope, parseJsonStrict } from '@quorate/core'
import { ownLog } from '../src/own-log.js'
import { builder, policyFor, buildStatement, tempStore, COMMIT, OTHER_COMMIT } from './helpers.js'

const alpha = builder('alpha', 'a', 1)
const policy = policyFor([alpha, builder('beta', 'b', 2)])
const cleanups: Array<() => Promise<void>> = []
afterEach(async () => { for (const c of cleanups.splice(0)) await c() })

function logOf (bytes: Uint8Array): { seq: number, prev: string | null } {
  const parsed = parseEnvelope(parseJsonStrict(Buffer.from(bytes).toString('utf8'), 'test'))
  return parseAttestation(parsed.payloadBytes).log
}

describe('own log', () => {
  it('numbers concurrent appends one after another, links each to the previous, and persists them across a reopen', async () => {
    const t = await tempStore()
    cleanups.push(t.cleanup)
    const log = ownLog({ store: t.store, key: alpha.key, policy })
    const appended = await Promise.all(['1', '2', '3'].map(async (c, i) => await log.append('hello', position => buildStatement(c, position, i === 1 ? OTHER_COMMIT : COMMIT))))
    expect(appended.map(a => logOf(a.bytes))).toEqual([
      { seq: 0, prev: null },
      { seq: 1, prev: appended[0].id },
      { seq: 2, prev: appended[1].id }
    ])
    expect(appended.filter(a => a.verified === undefined)).toEqual([])
    const store = await t.reopen()
    expect(await store.logHead('hello', alpha.key.keyid)).toMatchObject({ seq: 2, envelopeId: appended[2].id })
    expect(await store.logComplete('hello', alpha.key.keyid, 2)).toBe(true)
    const next = await ownLog({ store, key: alpha.key, policy }).append('hello', position => buildStatement('4', position))
    expect(logOf(next.bytes)).toEqual({ seq: 3, prev: appended[2].id })
  })

  it('keeps the log going after a statement that fails to build, and returns the newest entries to republish', async () => {
    const t = await tempStore()
    cleanups.push(t.cleanup)
    const log = ownLog({ store: t.store, key: alpha.key, policy })
    await log.append('hello', position => buildStatement('1', position))
    await expect(log.append('hello', () => { throw new Error('statement could not be made') })).rejects.toThrow('statement could not be made')
    const second = await log.append('hello', position => buildStatement('2', position))
    expect(logOf(second.bytes).seq).toBe(1)
    const recent = await log.recent('hello', 1)
    expect(recent.map(r => r.id)).toEqual([second.id])
    expect((await log.recent('hello', 50)).length).toBe(2)
  })

  it('stores under a key the policy does not list yet only with an identity (key rotation), and says why otherwise', async () => {
    const t = await tempStore()
    cleanups.push(t.cleanup)
    const newcomer = builder('alpha', 'a', 9)
    const refused = await ownLog({ store: t.store, key: newcomer.key, policy }).append('hello', position => buildStatement('1', position))
    expect(refused.verified).toBeUndefined()
    expect(refused.reason).toMatch(/unknown key/)
    expect(await t.store.logHead('hello', newcomer.key.keyid)).toBeUndefined()
    const kept = await ownLog({ store: t.store, key: newcomer.key, policy, identity: { builder: 'alpha', org: 'a' } }).append('hello', position => buildStatement('1', position))
    expect(kept.verified).toMatchObject({ builder: 'alpha', org: 'a', keyid: newcomer.key.keyid })
    expect(await t.store.logHead('hello', newcomer.key.keyid)).toMatchObject({ seq: 0, envelopeId: kept.id })
  })
})

// Own-log recovery (DESIGN.md "A node never forks its own log") with a real LevelDB store: what
// it fetches back is stored and announced like any ingested envelope, so SSE clients and the
// cached commit pages see it.
import { describe, it, expect, afterEach } from 'vitest'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parsePolicy } from '@quorate/core'
import { ownLogRecovery } from '../src/own-log-recovery.js'
import { EventBus, type NodeEvent } from '../src/events.js'
import { builder, buildEnvelope, tempStore, memoryLogger, RECIPE, COMMIT, OTHER_COMMIT } from './helpers.js'

const alpha = builder('alpha', 'a', 1)
const beta = builder('beta', 'b', 2)
const policy = parsePolicy({
  version: 1,
  builders: [
    { name: 'alpha', org: 'a', keys: [{ publicKey: alpha.key.publicKeyHex }] },
    { name: 'beta', org: 'b', endpoint: 'http://beta.example:8080', keys: [{ publicKey: beta.key.publicKeyHex }] }
  ],
  repositories: [{ id: 'hello', url: '/srv/hello.git', branches: ['main'], recipe: RECIPE }],
  quorum: { threshold: 2 }
}, 'test-policy.json')

const cleanups: Array<() => Promise<void> | void> = []
afterEach(async () => { for (const c of cleanups.splice(0).reverse()) await c() })

describe('own-log recovery', () => {
  it('stores what a peer holds of this key\'s log and announces each new envelope once, via "recovery"', async () => {
    const t = await tempStore()
    const dataDir = mkdtempSync(join(tmpdir(), 'quorate-recovery-'))
    cleanups.push(async () => { await t.cleanup(); rmSync(dataDir, { recursive: true, force: true }) })
    const mine = [buildEnvelope(alpha, '1', { seq: 0, commit: COMMIT }), buildEnvelope(alpha, '2', { seq: 1, commit: OTHER_COMMIT })]
    const forged = buildEnvelope(beta, '3', { seq: 0, commit: COMMIT }) // not this key's: never taken
    const asked: string[] = []
    const events = new EventBus()
    const seen: NodeEvent[] = []
    events.subscribe(e => seen.push(e))
    const recovery = ownLogRecovery({ dataDir, retryMs: 20 }, {
      policy,
      keyid: alpha.key.keyid,
      store: t.store,
      events,
      logger: memoryLogger(),
      fetchLog: async (endpoint) => {
        asked.push(endpoint)
        return [...mine, forged, mine[0]!].map(b => JSON.parse(Buffer.from(b).toString('utf8')))
      }
    })
    await recovery.start()
    await recovery.ready()
    expect(asked).toEqual(['http://beta.example:8080'])
    expect(recovery.status()).toMatchObject({ state: 'ready', recovered: 2 })
    expect((await t.store.logHead('hello', alpha.key.keyid))?.seq).toBe(1)
    const announced = seen.filter(e => e.type === 'attestation')
    expect(announced.map(e => e.type === 'attestation' && [e.commit, e.builder, e.via])).toEqual([[COMMIT, 'alpha', 'recovery'], [OTHER_COMMIT, 'alpha', 'recovery']])
    await recovery.stop()
  })
})

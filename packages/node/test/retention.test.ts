import { describe, it, expect, afterEach } from 'vitest'
import { mkdirSync, writeFileSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { outputs } from '../src/outputs.js'
import { runRetention } from '../src/retention.js'
import { tempStore, memoryLogger } from './helpers.js'

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => { for (const c of cleanups.splice(0)) await c() })
const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex')
const DAY = 24 * 60 * 60 * 1000

describe('retention of outputs and logs', () => {
  it('keeps the newest builds within age, count and size, keeps trusted ones for the whole window, and never removes shared content', async () => {
    const t = await tempStore()
    cleanups.push(t.cleanup)
    const o = outputs({ store: t.store, logger: memoryLogger() })
    const shared = Buffer.from('the same LICENSE in every build\n')
    const builds: Array<{ commit: string, file: string, list: string, log: string, nar: string }> = []
    for (let i = 0; i < 4; i++) {
      const copy = join(t.dir, `copy${i}`)
      mkdirSync(copy, { recursive: true })
      const own = Buffer.from(`app build ${i}\n`)
      writeFileSync(join(copy, 'app.js'), own)
      writeFileSync(join(copy, 'LICENSE'), shared)
      const files = [{ path: 'LICENSE', type: 'file', sha256: sha(shared), size: shared.length }, { path: 'app.js', type: 'file', sha256: sha(own), size: own.length }]
      const list = Buffer.from(JSON.stringify({ version: 1, files }))
      const log = Buffer.from(`log of build ${i}\n`)
      const commit = String(i).repeat(40)
      const nar = String(i).repeat(64)
      await o.keepBuild({ repoId: 'app', commit, log: { sha256: sha(log), complete: true, kept: log, totalBytes: log.length }, output: { narSha256: nar, fileListSha256: sha(list), fileListBytes: list, files, copyDir: copy } })
      builds.push({ commit, file: sha(own), list: sha(list), log: sha(log), nar })
    }
    const has = async (b: typeof builds[number]): Promise<boolean[]> => [
      await o.file(b.file) !== undefined, await o.fileList(b.list) !== undefined, await o.log(b.log) !== undefined
    ]
    // Build 1 is its commit's trusted result; the others are not trusted.
    const decision = async (_repo: string, commit: string): Promise<any> => commit === builds[1].commit ? { status: 'trusted', trusted: { narSha256: builds[1].nar } } : { status: 'pending' }
    const logger = memoryLogger()

    // At most 2 builds: the newest two stay, build 1 stays because a trusted decision needs it, build 0 goes.
    const r = await runRetention({ maxAgeDays: 30, maxBuilds: 2, maxBytes: 0, intervalMinutes: 60 }, { store: t.store, decision, logger })
    expect(r).toMatchObject({ removed: 1, kept: 3, keptForTrust: 1 })
    expect(await has(builds[0])).toEqual([false, false, false])
    for (const b of builds.slice(1)) expect(await has(b)).toEqual([true, true, true])
    // The file every build shares stays while any build that has it is kept.
    expect(await o.file(sha(shared))).toBeDefined()

    // Past the age window even the trusted build goes, and with the last build the shared file.
    const later = Date.now() + 31 * DAY
    const r2 = await runRetention({ maxAgeDays: 30, maxBuilds: 0, maxBytes: 0, intervalMinutes: 60 }, { store: t.store, decision, logger }, later)
    expect(r2).toMatchObject({ removed: 3, kept: 0 })
    for (const b of builds) expect(await has(b)).toEqual([false, false, false])
    expect(await o.file(sha(shared))).toBeUndefined()
    expect(logger.lines.some(l => l.msg === 'retention' || l.event === 'retention')).toBe(true)
  })

  it('bounds the bytes kept, newest first', async () => {
    const t = await tempStore()
    cleanups.push(t.cleanup)
    const o = outputs({ store: t.store, logger: memoryLogger() })
    const logs: string[] = []
    for (let i = 0; i < 3; i++) {
      const log = Buffer.alloc(1000, 97 + i)
      await o.keepBuild({ repoId: 'app', commit: String(i).repeat(40), log: { sha256: sha(log), complete: true, kept: log, totalBytes: log.length } })
      logs.push(sha(log))
    }
    const r = await runRetention({ maxAgeDays: 0, maxBuilds: 0, maxBytes: 2500, intervalMinutes: 60 }, { store: t.store, decision: async () => ({ status: 'pending' } as any), logger: memoryLogger() })
    expect(r).toMatchObject({ removed: 1, kept: 2 })
    expect(await o.log(logs[0])).toBeUndefined()
    expect(await o.log(logs[2])).toBeDefined()
  })
})

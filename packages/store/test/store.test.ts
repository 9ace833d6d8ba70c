import { describe, it, expect, afterEach } from 'vitest'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawnSync } from 'node:child_process'
import { checkEnvelope, keyPairFromSeed, makeRefObservationStatement, parsePolicy, signStatement, type Policy, type VerifiedAttestation } from '@quorate/core'
import { Store } from '../src/index.js'

const key = keyPairFromSeed(new Uint8Array(32).fill(1))
const other = keyPairFromSeed(new Uint8Array(32).fill(2))
const other2 = other
const policy: Policy = parsePolicy({
  version: 1,
  builders: [{ name: 'a', org: 'A', keys: [{ publicKey: key.publicKeyHex }] }, { name: 'b', org: 'B', keys: [{ publicKey: other.publicKeyHex }] }],
  repositories: [{ id: 'hello', url: '/x', branches: ['main'], recipe: { build: ['true'], output: 'o', outputKind: 'dir' } }],
  quorum: {}
})

function envelope (seq: number, commitChar = 'a', k = key, observedOn = ''): { v: VerifiedAttestation, bytes: Uint8Array } {
  const s = signStatement(makeRefObservationStatement({ repoId: 'hello', ref: 'refs/heads/main', commit: commitChar.repeat(40), builderId: 'x', observedOn, log: { seq, prev: seq === 0 ? null : 'e'.repeat(64) } }), k)
  const c = checkEnvelope(s.bytes, policy)
  if (c.verdict !== 'accept') throw new Error(c.reason)
  return { v: c.verified, bytes: s.bytes }
}

const dirs: string[] = []
const tmp = (): string => { const d = mkdtempSync(join(tmpdir(), 'quorate-store-')); dirs.push(d); return d }
afterEach(() => { for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true }) })

describe('Store', () => {
  it('stores envelopes idempotently, indexes them by commit and log, and keeps them across restarts', async () => {
    const dir = tmp()
    let store = await Store.open(dir)
    const e0 = envelope(0, 'a'); const e1 = envelope(1, 'b'); const e2 = envelope(2, 'a')
    expect(await store.putEnvelope(e0.v, e0.bytes, { sync: true })).toEqual({ status: 'stored' })
    expect(await store.putEnvelope(e0.v, e0.bytes)).toEqual({ status: 'duplicate' })
    await store.putEnvelope(e1.v, e1.bytes)
    await store.putEnvelope(e2.v, e2.bytes)
    await store.close()
    store = await Store.open(dir)
    const forA = await store.envelopesForCommit('hello', 'a'.repeat(40))
    expect(forA.map(x => x.meta.seq).sort()).toEqual([0, 2])
    expect(Buffer.from(forA.find(x => x.meta.seq === 0)!.bytes).equals(Buffer.from(e0.bytes))).toBe(true)
    expect(await store.logHead('hello', key.keyid)).toMatchObject({ seq: 2, envelopeId: e2.v.id })
    // what a decision reads: the bytes by (id, signer) in one read, the log positions of the counted ones apart
    const bytesForA = await store.envelopeBytesForCommit('hello', 'a'.repeat(40))
    expect(bytesForA.map(x => [x.id, x.keyid]).sort()).toEqual([[e0.v.id, key.keyid], [e2.v.id, key.keyid]].sort())
    expect(bytesForA.map(x => Buffer.from(x.bytes).toString()).sort()).toEqual([e0.bytes, e2.bytes].map(b => Buffer.from(b).toString()).sort())
    expect(await store.envelopeBytesForCommit('hello', 'c'.repeat(40))).toEqual([])
    expect(await store.logPositions([{ id: e2.v.id, keyid: key.keyid }, { id: e0.v.id, keyid: key.keyid }, { id: e1.v.id, keyid: other.keyid }])).toEqual([2, 0, undefined])
    const after: number[] = []
    for await (const b of store.envelopesAfter('hello', key.keyid, 0)) after.push(JSON.parse(Buffer.from(JSON.parse(Buffer.from(b).toString()).payload, 'base64').toString()).predicate.quorate_log.seq)
    expect(after).toEqual([1, 2])
    expect((await store.commitsOf('hello')).map(c => c.commit).sort()).toEqual(['a'.repeat(40), 'b'.repeat(40)])
    await store.close()
  })

  it('stores every ref observation but indexes only a budget of new commits per signer and repository (issue 14 item 5)', async () => {
    const store = await Store.open(tmp(), { commitIndexBudget: { burst: 3, perHour: 1 } })
    const mine = ['1', '2', '3', '4', '5'].map((c, seq) => envelope(seq, c))
    for (const e of mine) expect(await store.putEnvelope(e.v, e.bytes)).toEqual({ status: 'stored' })
    // the whole log is kept: no gap for sync or for the previous-tip check
    const seqs: number[] = []
    for await (const b of store.envelopesAfter('hello', key.keyid, -1)) seqs.push(JSON.parse(Buffer.from(JSON.parse(Buffer.from(b).toString()).payload, 'base64').toString()).predicate.quorate_log.seq)
    expect(seqs).toEqual([0, 1, 2, 3, 4])
    expect((await store.recentRefObservations('hello', key.keyid, 10))).toHaveLength(5)
    // only the first three new commits are indexed
    expect((await store.commitsOf('hello')).map(c => c.commit[0]).sort()).toEqual(['1', '2', '3'])
    expect(await store.envelopesForCommit('hello', '4'.repeat(40))).toEqual([])
    expect(store.commitsNotIndexed).toBe(2)
    expect(store.commitsNotIndexedBy()).toEqual([{ repoId: 'hello', keyid: key.keyid, commits: 2, envelopes: 2 }])
    // another signer has its own budget; a commit already indexed costs nothing
    const theirs = envelope(0, '4', other)
    await store.putEnvelope(theirs.v, theirs.bytes)
    const again = envelope(5, '4')
    await store.putEnvelope(again.v, again.bytes)
    expect((await store.envelopesForCommit('hello', '4'.repeat(40))).map(x => x.meta.keyid).sort()).toEqual([key.keyid, other.keyid].sort())
    await store.close()
  })

  it('keeps the first fork at a sequence number as an equivocation proof, and later copies as duplicates', async () => {
    const store = await Store.open(tmp())
    const first = envelope(0, 'a', key, 't1')
    const second = envelope(0, 'a', key, 't2')
    const third = envelope(0, 'a', key, 't3')
    await store.putEnvelope(first.v, first.bytes)
    const out = await store.putEnvelope(second.v, second.bytes)
    expect(out.status).toBe('fork')
    expect((await store.putEnvelope(third.v, third.bytes)).status).toBe('duplicate')
    const proofs = await store.equivocationProofs('hello')
    expect(proofs).toHaveLength(1)
    expect(proofs[0].keyid).toBe(key.keyid)
    // The same statement signed by another key is another envelope, not a duplicate.
    const byOther = envelope(0, 'a', other, 't1')
    expect(byOther.v.id).toBe(first.v.id)
    expect((await store.putEnvelope(byOther.v, byOther.bytes)).status).toBe('stored')
    await store.close()
  })

  it('refuses a second process on the same data directory with a clear error', async () => {
    const dir = tmp()
    const store = await Store.open(dir)
    const script = `import('${join(process.cwd(), 'packages/store/dist/index.js')}').then(m => m.Store.open(${JSON.stringify(dir)})).then(() => console.log('opened'), e => console.log(e.code + ': ' + e.message))`
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' })
    expect(r.stdout).toMatch(/^STORE_LOCKED: another Quorate node is using the data directory/)
    await store.close()
  })

  it('queues a build key once and keeps job state across restarts', async () => {
    const dir = tmp()
    let store = await Store.open(dir)
    const job = { repoId: 'hello', commit: 'a'.repeat(40), ref: 'refs/heads/main', recipeKey: 'r', queuedAt: 1 }
    expect(await store.enqueueJob(job)).toBe(true)
    expect(await store.enqueueJob(job)).toBe(false)
    const j = (await store.getJob('hello', job.commit, 'r'))!
    await store.updateJob({ ...j, state: 'succeeded', envelopeId: 'x' })
    await store.close()
    store = await Store.open(dir)
    expect((await store.jobsList()).map(x => x.state)).toEqual(['succeeded'])
    await store.close()
  })

  it('keeps the job counts by state in step with every enqueue and update, as a fresh count finds them', async () => {
    const dir = tmp()
    let store = await Store.open(dir)
    const job = (c: string): { repoId: string, commit: string, ref: string, recipeKey: string, queuedAt: number } => ({ repoId: 'hello', commit: c.repeat(40), ref: 'refs/heads/main', recipeKey: 'r', queuedAt: 1 })
    await store.enqueueJob(job('a'))
    expect(await store.jobCounts()).toEqual({ queued: 1, running: 0, succeeded: 0, failed: 0 })
    await store.enqueueJob(job('b'))
    await store.enqueueJob(job('b')) // already queued: no change
    const a = (await store.getJob('hello', 'a'.repeat(40), 'r'))!
    await store.updateJob({ ...a, state: 'running' })
    expect(await store.jobCounts()).toEqual({ queued: 1, running: 1, succeeded: 0, failed: 0 })
    await store.updateJob({ ...a, state: 'failed' })
    expect(await store.jobCounts()).toEqual({ queued: 1, running: 0, succeeded: 0, failed: 1 })
    await store.close()
    store = await Store.open(dir) // counted afresh from the jobs themselves
    expect(await store.jobCounts()).toEqual({ queued: 1, running: 0, succeeded: 0, failed: 1 })
    await store.close()
  })
})

describe('Store ref observations', () => {
  it('indexes an observation under its tip and every commit it introduced, and lists a ref\'s observations', async () => {
    const dir = tmp()
    const store = await Store.open(dir)
    const [c1, c2, c3] = ['1', '2', '3'].map(c => c.repeat(40))
    const s = signStatement(makeRefObservationStatement({ repoId: 'hello', ref: 'refs/heads/main', commit: c3, previous: c1, fastForward: true, introduced: [c3, c2], builderId: 'x', observedOn: '', log: { seq: 0, prev: null } }), key)
    const c = checkEnvelope(s.bytes, policy)
    if (c.verdict !== 'accept') throw new Error(c.reason)
    await store.putEnvelope(c.verified, s.bytes)
    const other = envelope(1, 'a')
    await store.putEnvelope(other.v, other.bytes)
    expect((await store.envelopesForCommit('hello', c2)).map(x => x.meta.id)).toEqual([c.verified.id])
    expect((await store.envelopesForCommit('hello', c3)).map(x => x.meta.id)).toEqual([c.verified.id])
    expect(await store.envelopesForCommit('hello', c1)).toEqual([])
    expect((await store.commitsOf('hello')).map(x => x.commit).sort()).toEqual([c2, c3, 'a'.repeat(40)])
    expect(await store.refObservations('hello', 'refs/heads/main')).toHaveLength(2)
    expect(await store.refObservations('hello', 'refs/heads/dev')).toHaveLength(0)
    await store.close()
  })
})

describe('Store logs', () => {
  it('reports the contiguous head of each log so sync fills gaps, and whether a log is complete and linked', async () => {
    const store = await Store.open(tmp())
    const e0 = envelope(0, 'a'); const e1 = envelope(1, 'b'); const e3 = envelope(3, 'c')
    await store.putEnvelope(e0.v, e0.bytes)
    await store.putEnvelope(e1.v, e1.bytes)
    await store.putEnvelope(e3.v, e3.bytes)
    expect(await store.logHeads()).toEqual([{ repoId: 'hello', keyid: key.keyid, seq: 1, envelopeId: e1.v.id }])
    expect((await store.logHead('hello', key.keyid))?.seq).toBe(3)
    expect(await store.logComplete('hello', key.keyid, 0)).toBe(true)
    // prev of e1 is not e0's id in these fixtures: the link check catches it.
    expect(await store.logComplete('hello', key.keyid, 1)).toBe(false)
    expect(await store.logComplete('hello', key.keyid, 3)).toBe(false)
    const other = envelope(1, 'b', other2)
    await store.putEnvelope(other.v, other.bytes)
    expect((await store.logHeads()).find(h => h.keyid === other2.keyid)).toBeUndefined()
    await store.close()
  })

  it('stores concurrent puts in one batch with the same outcomes, and moves the log heads it keeps in memory (gaps filled later)', async () => {
    const dir = tmp()
    let store = await Store.open(dir)
    expect(await store.logHeads()).toEqual([]) // scanned now: later writes move the heads in memory
    const e0 = envelope(0, 'a'); const e1 = envelope(1, 'b'); const e3 = envelope(3, 'c')
    const fork0 = envelope(0, 'a', key, 'other time'); const fork0b = envelope(0, 'a', key, 'third time')
    // all issued before any is written: one batch holding a duplicate, a fork and a second copy of the fork
    const outs = await Promise.all([e0, e0, e1, e3, fork0, fork0b].map(async e => await store.putEnvelope(e.v, e.bytes)))
    expect(outs.map(o => o.status)).toEqual(['stored', 'duplicate', 'stored', 'stored', 'fork', 'duplicate'])
    expect(await store.equivocationProofs('hello')).toHaveLength(1)
    expect(await store.logHeads()).toEqual([{ repoId: 'hello', keyid: key.keyid, seq: 1, envelopeId: e1.v.id }])
    const e2 = envelope(2, 'd')
    expect((await store.putEnvelopes([{ verified: e2.v, bytes: e2.bytes }]))[0].status).toBe('stored')
    // seq 2 filled the gap: the head moves past the seq 3 stored before
    expect(await store.logHeads()).toEqual([{ repoId: 'hello', keyid: key.keyid, seq: 3, envelopeId: e3.v.id }])
    // a log without seq 0 gets a head once seq 0 arrives
    const o1 = envelope(1, 'b', other2); const o0 = envelope(0, 'a', other2)
    await store.putEnvelope(o1.v, o1.bytes)
    expect((await store.logHeads()).find(h => h.keyid === other2.keyid)).toBeUndefined()
    await store.putEnvelope(o0.v, o0.bytes)
    expect((await store.logHeads()).find(h => h.keyid === other2.keyid)?.seq).toBe(1)
    const inMemory = await store.logHeads()
    await store.close()
    store = await Store.open(dir)
    expect(await store.logHeads()).toEqual(inMemory) // what a fresh scan of the store finds
    expect((await store.commitsOf('hello')).length).toBe(4)
    await store.close()
  })

  it('answers whether a log is complete and linked after writes, gap fills and a restart', async () => {
    const dir = tmp()
    const chain: Array<{ v: VerifiedAttestation, bytes: Uint8Array }> = []
    for (let seq = 0; seq < 6; seq++) {
      const s = signStatement(makeRefObservationStatement({ repoId: 'hello', ref: 'refs/heads/main', commit: 'a'.repeat(40), builderId: 'x', observedOn: String(seq), log: { seq, prev: seq === 0 ? null : chain[seq - 1].v.id } }), key)
      const c = checkEnvelope(s.bytes, policy)
      if (c.verdict !== 'accept') throw new Error(c.reason)
      chain.push({ v: c.verified, bytes: s.bytes })
    }
    let store = await Store.open(dir)
    for (const e of [chain[0], chain[1], chain[3]]) await store.putEnvelope(e.v, e.bytes)
    expect(await store.logComplete('hello', key.keyid, 1)).toBe(true)
    expect(await store.logComplete('hello', key.keyid, 3)).toBe(false) // seq 2 missing
    await store.putEnvelope(chain[2].v, chain[2].bytes)
    expect(await store.logComplete('hello', key.keyid, 3)).toBe(true) // the gap filled
    await store.putEnvelope(chain[4].v, chain[4].bytes)
    expect(await store.logComplete('hello', key.keyid, 4)).toBe(true)
    // seq 5 linked to something else: present but not linked
    const bad = envelope(5, 'a', key, 'bad link')
    await store.putEnvelope(bad.v, bad.bytes)
    expect(await store.logComplete('hello', key.keyid, 5)).toBe(false)
    await store.close()
    store = await Store.open(dir)
    expect(await store.logComplete('hello', key.keyid, 4)).toBe(true)
    expect(await store.logComplete('hello', key.keyid, 5)).toBe(false)
    await store.close()
  })

  it('streams a fork right after the envelope it contradicts', async () => {
    const store = await Store.open(tmp())
    const a = envelope(0, 'a', key, 't1'); const b = envelope(0, 'a', key, 't2')
    await store.putEnvelope(a.v, a.bytes)
    await store.putEnvelope(b.v, b.bytes)
    const out: Uint8Array[] = []
    for await (const x of store.envelopesAfter('hello', key.keyid, -1)) out.push(x)
    expect(out.map(x => Buffer.from(x).toString())).toEqual([Buffer.from(a.bytes).toString(), Buffer.from(b.bytes).toString()])
    await store.close()
  })
})

describe('Store write path memory (the store stays the truth)', () => {
  it('finds duplicates and forks of envelopes stored before a restart, and stores what lies past a log\'s end', async () => {
    const dir = tmp()
    let store = await Store.open(dir)
    const [e0, e1, e2] = [envelope(0, 'a'), envelope(1, 'b'), envelope(2, 'c')]
    for (const e of [e0, e1, e2]) await store.putEnvelope(e.v, e.bytes)
    await store.close()
    store = await Store.open(dir) // the highest position of each log is read again, once
    const fork1 = envelope(1, 'b', key, 'other time')
    const e4 = envelope(4, 'e'); const e3 = envelope(3, 'd')
    const outs = await Promise.all([e2, fork1, e4, e4, e3].map(async e => await store.putEnvelope(e.v, e.bytes)))
    expect(outs.map(o => o.status)).toEqual(['duplicate', 'fork', 'stored', 'duplicate', 'stored'])
    // written past the end, then read back as duplicates and forks in a later batch
    expect((await store.putEnvelope(e3.v, e3.bytes)).status).toBe('duplicate')
    expect((await store.putEnvelope(envelope(4, 'e', key, 'other time').v, envelope(4, 'e', key, 'other time').bytes)).status).toBe('fork')
    expect(await store.logHead('hello', key.keyid)).toMatchObject({ seq: 4, envelopeId: e4.v.id })
    expect(await store.equivocationProofs('hello')).toHaveLength(2)
    // a log that does not reach a position is not complete up to it, before and after a restart
    expect(await store.logComplete('hello', key.keyid, 7)).toBe(false)
    await store.close()
    store = await Store.open(dir)
    expect(await store.logComplete('hello', key.keyid, 7)).toBe(false)
    await store.close()
  })

  it('moves a log\'s linked prefix past positions written out of order once the gap closes, and stops at a broken link', async () => {
    const linkedLog = (n: number): Array<{ v: VerifiedAttestation, bytes: Uint8Array }> => {
      const out: Array<{ v: VerifiedAttestation, bytes: Uint8Array }> = []
      let prev: string | null = null
      for (let seq = 0; seq < n; seq++) {
        const s = signStatement(makeRefObservationStatement({ repoId: 'hello', ref: 'refs/heads/main', commit: String(seq % 10).repeat(40), builderId: 'x', observedOn: '', log: { seq, prev } }), key)
        const c = checkEnvelope(s.bytes, policy)
        if (c.verdict !== 'accept') throw new Error(c.reason)
        out.push({ v: c.verified, bytes: s.bytes })
        prev = c.verified.id
      }
      return out
    }
    const dir = tmp()
    let store = await Store.open(dir)
    const log = linkedLog(6)
    // separate batches, out of order: 0, 3, 2, 5, then 1 closes the gap up to 3
    for (const seq of [0, 3, 2, 5]) await store.putEnvelope(log[seq].v, log[seq].bytes)
    expect(await store.logComplete('hello', key.keyid, 3)).toBe(false)
    await store.putEnvelope(log[1].v, log[1].bytes)
    expect(await Promise.all([3, 4, 5].map(async s => await store.logComplete('hello', key.keyid, s)))).toEqual([true, false, false])
    await store.putEnvelope(log[4].v, log[4].bytes)
    expect(await store.logComplete('hello', key.keyid, 5)).toBe(true)
    // the fixtures of `envelope` are not linked (prev is not the id before): the prefix stops at 0
    for (const seq of [2, 1]) await store.putEnvelope(envelope(seq, 'a', other).v, envelope(seq, 'a', other).bytes)
    await store.putEnvelope(envelope(0, 'a', other).v, envelope(0, 'a', other).bytes)
    expect(await Promise.all([0, 1, 2].map(async s => await store.logComplete('hello', other.keyid, s)))).toEqual([true, false, false])
    await store.close()
    store = await Store.open(dir)
    expect(await store.logComplete('hello', key.keyid, 5)).toBe(true)
    expect(await store.logComplete('hello', other.keyid, 1)).toBe(false)
    await store.close()
  })

  it('names the commit of a signer\'s newest ref observation before a position, from memory and from the store alike', async () => {
    const dir = tmp()
    let store = await Store.open(dir)
    expect(await store.priorRefCommit('hello', 'refs/heads/main', key.keyid, 5)).toBe(null)
    const [e0, e1, e3] = [envelope(0, 'a'), envelope(1, 'b'), envelope(3, 'd')]
    await store.putEnvelope(e0.v, e0.bytes)
    expect(await store.priorRefCommit('hello', 'refs/heads/main', key.keyid, 1)).toBe('a'.repeat(40))
    // out of order: seq 3 before seq 1
    await store.putEnvelope(e3.v, e3.bytes)
    await store.putEnvelope(e1.v, e1.bytes)
    const answers = async (): Promise<Array<string | null>> => await Promise.all([0, 1, 2, 3, 4, 9].map(async s => await store.priorRefCommit('hello', 'refs/heads/main', key.keyid, s)))
    const expected = [null, 'a'.repeat(40), 'b'.repeat(40), 'b'.repeat(40), 'd'.repeat(40), 'd'.repeat(40)]
    expect(await answers()).toEqual(expected)
    // a fork's second envelope is evidence, not the signer's tip
    expect((await store.putEnvelope(envelope(3, 'f', key, 'other time').v, envelope(3, 'f', key, 'other time').bytes)).status).toBe('fork')
    expect(await answers()).toEqual(expected)
    expect(await store.priorRefCommit('hello', 'refs/heads/dev', key.keyid, 9)).toBe(null)
    expect(await store.priorRefCommit('hello', 'refs/heads/main', other.keyid, 9)).toBe(null)
    await store.close()
    store = await Store.open(dir)
    expect(await answers()).toEqual(expected)
    await store.close()
  })
})

describe('Store private content', () => {
  it('marks content private unless a public build produced it too, across a restart', async () => {
    const dir = tmp()
    let store = await Store.open(dir)
    const [a, b, c] = ['a', 'b', 'c'].map(x => x.repeat(64))
    await store.markPublic([b])
    await store.markPrivate([a, b, a])
    expect(await store.isPrivate(a)).toBe(true)
    expect(await store.isPrivate(b)).toBe(false)
    expect(await store.isPrivate(c)).toBe(false)
    await store.markPrivate([])
    await store.markPublic([a])
    await store.markPrivate([a, c])
    await store.close()
    store = await Store.open(dir)
    expect(await store.isPrivate(a)).toBe(false)
    expect(await store.isPrivate(c)).toBe(true)
    await store.close()
  })
})

describe('Store format', () => {
  it('records its format, and says exactly why it will not open a store of another format', async () => {
    const dir = tmp()
    const store = await Store.open(dir)
    await store.putState('format', 99) // as a future release would write it
    await store.close()
    await expect(Store.open(dir)).rejects.toThrow(/has format 99, this release reads format 1; use the matching Quorate release or restore a backup/)
  })
})

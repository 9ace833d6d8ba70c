// Notifications across a node restart, on real node processes: what a node already notified is
// kept in its store, so a restart neither sends a notice again nor loses sight of a change that
// happened while it was down (a trusted commit contradicted by a builder that came up meanwhile).
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtempSync, rmSync, writeFileSync, readFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
// @ts-expect-error plain JS helper shared with the demo
import { createSampleRepo, commitAll, initNetwork, startNodeProcess, stopNodeProcess, waitFor, getJson, editConfig, sleep } from '../scripts/devnet.js'

let work: string
const started: any[] = []

beforeAll(() => { work = mkdtempSync(join(tmpdir(), 'quorate-notice-memory-')) })
afterAll(async () => {
  await Promise.all(started.map(async n => await stopNodeProcess(n)))
  rmSync(work, { recursive: true, force: true })
})

describe('notices across a restart', () => {
  it('a failed commit is notified once across a restart, and a trusted commit contradicted while the node was down is notified after it', async () => {
    const repo = join(work, 'repo')
    const good = createSampleRepo(repo)
    const noticeFile = join(work, 'notices.jsonl')
    const notifier = join(work, 'notify.sh')
    writeFileSync(notifier, `#!/bin/sh\ncat >> ${noticeFile}\n`, { mode: 0o755 })
    // Four organizations, threshold 3. Organization b has a second builder whose CI is compromised
    // (it starts only while a1 is down); d1 never runs, so organization d stays open.
    const net = await initNetwork({
      dir: join(work, 'net'),
      repoUrl: repo,
      pollSeconds: 1,
      builders: [{ name: 'a1', org: 'a' }, { name: 'b1', org: 'b' }, { name: 'b2', org: 'b', tamper: true }, { name: 'c1', org: 'c' }, { name: 'd1', org: 'd' }]
    })
    const [a1, b1, b2, c1] = net.nodes
    for (const n of net.nodes) editConfig(n, (cfg: any) => { cfg.buildAttempts = 1 })
    editConfig(a1, (cfg: any) => { cfg.notify = { command: [notifier] } })
    // Everyone bootstraps to a1, which will be down when b2 starts: b2 joins through b1.
    editConfig(b2, (cfg: any) => { cfg.bootstrap = [b1.member.multiaddr] })
    const start = async (n: any): Promise<void> => { if (!started.includes(n)) started.push(n); await startNodeProcess(n, {}) }
    await Promise.all([a1, b1, c1].map(start))
    const decisionAt = async (n: any, c: string): Promise<any> => (await getJson(`${n.url}/v1/repos/${net.repoId}/commits/${c}`)).decision
    const notices = (): any[] => existsSync(noticeFile) ? readFileSync(noticeFile, 'utf8').split('\n').filter(l => l !== '').map(l => JSON.parse(l)) : []

    await waitFor(async () => (await decisionAt(a1, good)).status === 'trusted', { timeoutMs: 90_000, what: 'the good commit trusted on a1' })
    writeFileSync(join(repo, 'build.sh'), '#!/bin/sh\necho "cannot build: missing dependency libfoo" >&2\nexit 3\n', { mode: 0o755 })
    const broken = commitAll(repo, 'break the build')
    await waitFor(async () => notices().some(n => n.type === 'failed' && n.commit === broken), { timeoutMs: 90_000, what: 'a1 to notify the failed commit' })
    await waitFor(async () => (await decisionAt(a1, broken)).failedBuilders.length === 3, { timeoutMs: 60_000, what: 'the final failures of a1, b1 and c1 at a1' })

    // a1 goes down. Meanwhile b2 comes up: it fails the broken commit too (no change: still failed),
    // and signs a tampered result for the good one, so organization b is conflicted and the good
    // commit is no longer trusted (pending: d could still answer).
    await stopNodeProcess(a1)
    await start(b2)
    await waitFor(async () => {
      const [g, b] = await Promise.all([decisionAt(b1, good), decisionAt(b1, broken)])
      return g.status === 'pending' && g.conflictedOrgs.some((o: any) => o.org === 'b') && b.failedBuilders.includes('b2')
    }, { timeoutMs: 90_000, what: 'b2\'s answers at b1' })

    // a1 comes back and catches up by sync.
    await start(a1)
    await waitFor(async () => {
      const [g, b] = await Promise.all([decisionAt(a1, good), decisionAt(a1, broken)])
      return g.status === 'pending' && b.failedBuilders.includes('b2')
    }, { timeoutMs: 60_000, what: 'a1 to catch up with b2\'s answers' })
    await waitFor(async () => notices().some(n => n.type === 'contradicted' && n.commit === good), { timeoutMs: 30_000, what: 'a1 to notify that the good commit is contradicted' })
    await sleep(1500)
    const all = notices()
    expect(all.filter(n => n.commit === broken).map(n => n.type)).toEqual(['failed'])
    const contradicted = all.filter(n => n.commit === good)
    expect(contradicted).toHaveLength(1)
    expect(contradicted[0].reason).toMatch(/^was trusted, now pending: .*organizations whose builders disagree: b/)
    expect(all).toHaveLength(2)
  }, 300_000)
})

// Decisions a deploy pipeline can act on (issue 9), on real node processes on 127.0.0.1:
// a fast dissenter with a slow fourth organization (pending, never disputed in between).
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
// @ts-expect-error plain JS helper shared with the demo
import { createSampleRepo, commitAll, addCommit, initNetwork, startNodeProcess, stopNodeProcess, waitFor, getJson, runCli, editConfig } from '../scripts/devnet.js'

let work: string
const started: any[] = []

async function start (node: any): Promise<void> {
  started.push(node)
  await startNodeProcess(node, {})
}

beforeAll(() => { work = mkdtempSync(join(tmpdir(), 'quorate-decisions-')) })
afterAll(async () => {
  await Promise.all(started.map(async n => await stopNodeProcess(n)))
  rmSync(work, { recursive: true, force: true })
})

describe('a fast dissenter and a slow fourth organization', () => {
  it('verify answers pending (3), never disputed, until the fourth organization makes it trusted; no notice is sent', async () => {
    const repo = join(work, 'slow-repo')
    const commit = createSampleRepo(repo)
    const noticeFile = join(work, 'slow-notices.jsonl')
    const notifier = join(work, 'slow-notify.sh')
    writeFileSync(notifier, `#!/bin/sh\ncat >> ${noticeFile}\n`, { mode: 0o755 })
    // Four organizations, threshold 3; gamma's CI is compromised and fast, delta is slow (starts late).
    const net = await initNetwork({
      dir: join(work, 'slow'),
      repoUrl: repo,
      pollSeconds: 1,
      builders: [{ name: 'alpha-1', org: 'alpha' }, { name: 'beta-1', org: 'beta' }, { name: 'gamma-1', org: 'gamma', tamper: true }, { name: 'delta-1', org: 'delta' }]
    })
    editConfig(net.nodes[0], c => { c.notify = { command: [notifier] } })
    const [alpha, beta, gamma, delta] = net.nodes
    await Promise.all([alpha, beta, gamma].map(start))
    const url = `${alpha.url}/v1/repos/${net.repoId}/commits/${commit}`
    const early = await waitFor(async () => {
      const r = await getJson(url)
      return r.decision.votes.length === 3 ? r.decision : undefined
    }, { timeoutMs: 60_000, what: 'the three fast results' })
    expect(early.status).toBe('pending')
    expect(early.openOrgs).toEqual(['delta'])
    expect(early.results.map((r: any) => r.supportingOrgs)).toEqual([['alpha', 'beta'], ['gamma']])

    const verifyArgs = ['verify', ...net.nodes.slice(0, 3).flatMap((n: any) => ['--node', n.url]), '--policy', net.policyFile, '--repo', net.repoId, '--commit', commit]
    const now = await runCli([...verifyArgs, '--json'])
    expect(now.code).toBe(3)
    expect(now.stderr).toMatch(/is pending: best result has 2 of the 3 organizations needed, 1 organization still open; builders disagree so far/)
    expect(JSON.parse(now.stdout).status).toBe('pending')

    // A pipeline waiting now passes once delta has built, and never stops at a "disputed" in between.
    const waiting = runCli([...verifyArgs, '--wait', '--timeout', '120'])
    await start(delta)
    const waited = await waiting
    expect(waited.code).toBe(0)
    expect(waited.stderr).toMatch(/waiting: .* is pending/)
    expect(waited.stderr).toMatch(/PASSED: .* is trusted: .*attested by 3 of 4 organizations .*1 dissenting builder: gamma-1/)
    // Final answer in the node too; the node's log never called its pending result a dissent.
    const d = await waitFor(async () => { const r = await getJson(url); return r.decision.status === 'trusted' ? r.decision : undefined }, { timeoutMs: 30_000, what: 'alpha to see it trusted' })
    expect(d.dissenters.map((x: any) => x.builder)).toEqual(['gamma-1'])
    const decisions = (alpha.log as string).split('\n').filter(l => l.startsWith('{')).map(l => JSON.parse(l)).filter(l => l.event === 'decision' && l.commit === commit.slice(0, 12))
    expect(decisions.some(l => l.status === 'pending')).toBe(true)
    expect(decisions.some(l => l.status === 'disputed')).toBe(false)
    expect(decisions.filter(l => l.status === 'pending').every(l => l.dissent === undefined)).toBe(true)
    expect(existsSync(noticeFile)).toBe(false)
  }, 180_000)
})

describe('one network through failures, pushes, a rollback and a lost data directory', () => {
  let net: any
  let repo: string
  let c0: string
  const nodes = (): string[] => net.nodes.flatMap((n: any) => ['--node', n.url])
  const commitUrl = (n: any, c: string): string => `${n.url}/v1/repos/${net.repoId}/commits/${c}`
  const trustedEverywhere = async (c: string, on: any[] = net.nodes): Promise<void> => {
    await waitFor(async () => (await Promise.all(on.map(async (n: any) => (await getJson(commitUrl(n, c))).decision.status))).every(s => s === 'trusted'), { timeoutMs: 90_000, what: `${c.slice(0, 12)} trusted on every node` })
  }
  const git = (...args: string[]): string => execFileSync('git', args, { cwd: repo, encoding: 'utf8', env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null' } }).trim()

  beforeAll(async () => {
    repo = join(work, 'repo')
    c0 = createSampleRepo(repo)
    // Three organizations, threshold 2; short retries so a failing build's failures turn final in seconds.
    net = await initNetwork({ dir: join(work, 'net'), repoUrl: repo, pollSeconds: 1, builders: [{ name: 'a1', org: 'a' }, { name: 'b1', org: 'b' }, { name: 'c1', org: 'c' }] })
    for (const n of net.nodes) editConfig(n, c => { c.buildAttempts = 2; c.retryBackoffSeconds = 1 })
    await Promise.all(net.nodes.map(start))
    await trustedEverywhere(c0)
  }, 180_000)

  it('a commit failing on every builder is failed (exit 1) with its reasons once the final failures are in; audit groups the retries', async () => {
    writeFileSync(join(repo, 'build.sh'), '#!/bin/sh\necho "cannot build: missing dependency libfoo" >&2\nexit 3\n', { mode: 0o755 })
    const broken = commitAll(repo, 'break the build')
    // --wait gives up with exit 3 after 60 s: the failed answer must come before that
    const r = await runCli(['verify', ...nodes(), '--policy', net.policyFile, '--repo', net.repoId, '--commit', broken, '--wait', '--timeout', '60', '--json'])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/FAILED: .* failed to build: the build failed: \d+ final signed failures? from \d builders?/)
    const report = JSON.parse(r.stdout)
    expect(report.status).toBe('failed')
    expect(report.failures.filter((f: any) => f.final).length).toBeGreaterThanOrEqual(2)
    expect(report.failures.some((f: any) => f.attempt === 2 && f.final)).toBe(true)
    const audit = await runCli(['audit', ...nodes(), '--policy', net.policyFile, '--commit', broken])
    // one line per builder, its retries grouped (a builder may still be retrying when the answer is final)
    expect(audit.stdout).toMatch(/failure: [abc]1: attempts 1, 2 \(final\): the build command .* exited with status 3/)
    for (const b of ['a1', 'b1', 'c1']) expect((audit.stdout.match(new RegExp(`failure: ${b}:`, 'g')) ?? []).length).toBeLessThanOrEqual(1)
  }, 120_000)

  it('a push of two commits: --ref accepts the one that was never a tip, and the timeline lists the child first', async () => {
    writeFileSync(join(repo, 'build.sh'), execFileSync('git', ['show', `${c0}:build.sh`], { cwd: repo }), { mode: 0o755 })
    const g1 = commitAll(repo, 'fix the build')
    const g2 = addCommit(repo, 'src/extra.js', 'export const extra = 1\n', 'second commit of the push')
    await trustedEverywhere(g1)
    await trustedEverywhere(g2)
    const r = await runCli(['verify', ...nodes(), '--policy', net.policyFile, '--repo', net.repoId, '--commit', g1, '--ref', 'refs/heads/main'])
    expect(r.stderr).toMatch(/PASSED: .* seen on refs\/heads\/main by (a, b|a, c|b, c|a, b, c)(;|$)/m)
    expect(r.code).toBe(0)
    const timeline = (await getJson(`${net.nodes[0].url}/v1/repos/${net.repoId}/commits`)).commits.map((c: any) => c.commit)
    expect(timeline.indexOf(g2)).toBeLessThan(timeline.indexOf(g1))
    expect(timeline.indexOf(g1)).toBeLessThan(timeline.indexOf(c0))
    const latest = await runCli(['latest', ...nodes(), '--repo', net.repoId, '--ref', 'refs/heads/main', '--policy', net.policyFile, '--json'])
    expect(latest.code).toBe(0)
    expect(JSON.parse(latest.stdout).commit).toBe(g2)
  }, 180_000)

  it('after a rollback of main, latest is the older commit again, and it follows a force-push', async () => {
    const head = git('rev-parse', 'HEAD')
    const back = git('rev-parse', 'HEAD~1')
    git('reset', '-q', '--hard', back)
    await waitFor(async () => (await getJson(`${net.nodes[0].url}/v1/repos/${net.repoId}/latest?ref=refs/heads/main`)).commit === back, { timeoutMs: 60_000, what: 'latest to follow the rollback' })
    const latest = await runCli(['latest', ...nodes(), '--repo', net.repoId, '--ref', 'refs/heads/main', '--policy', net.policyFile])
    expect(latest.code).toBe(0)
    expect(latest.stdout.split(' ')[0]).toBe(back)
    expect(latest.stdout).not.toContain(head)
    // A force-push to a commit on another line of history: latest follows once it is trusted.
    git('reset', '-q', '--hard', c0)
    const forced = addCommit(repo, 'src/forced.js', 'export const forced = 1\n', 'force-pushed line')
    await trustedEverywhere(forced)
    await waitFor(async () => (await getJson(`${net.nodes[0].url}/v1/repos/${net.repoId}/latest?ref=refs/heads/main`)).commit === forced, { timeoutMs: 60_000, what: 'latest to follow the force-push' })
    const unknown = await runCli(['latest', ...nodes(), '--repo', 'no-such-repo', '--ref', 'refs/heads/main'])
    expect(unknown.code).toBe(2)
  }, 120_000)

  it('a node that lost its data directory fetches its log back from its peers, signs nothing twice, and nothing becomes disputed', async () => {
    const a = net.nodes[0]
    const keyid = a.member.keyid
    const logOf = async (n: any): Promise<any[]> => (await getJson(`${n.url}/v1/logs/${net.repoId}/${keyid}`)).envelopes
    const before = await logOf(net.nodes[1])
    expect(before.length).toBeGreaterThan(3)
    await stopNodeProcess(a)
    rmSync(join(a.dir, 'data'), { recursive: true, force: true })
    a.log = ''
    await start(a)
    await waitFor(async () => (await getJson(`${a.url}/v1/status`)).ownLog?.state === 'ready', { timeoutMs: 60_000, what: 'a1 to recover its own log' })
      .catch(async (err: Error) => { throw new Error(`${err.message}\n${JSON.stringify((await getJson(`${a.url}/v1/status`)).ownLog)}\n${String(a.log).slice(-3000)}`) })
    expect(a.log).toMatch(/holding signatures/)
    expect(a.log).toMatch(/own log recovered/)
    // A new commit: a1 signs it after its old log (no second envelope at a used position)
    const next = addCommit(repo, 'src/after-loss.js', 'export const after = 1\n', 'after the data loss')
    await trustedEverywhere(next)
    const after = await logOf(net.nodes[1])
    const seqs = after.map((e: any) => JSON.parse(Buffer.from(e.payload, 'base64').toString()).predicate?.quorate_log?.seq ?? JSON.parse(Buffer.from(e.payload, 'base64').toString()).predicate.runDetails.metadata.quorate_log.seq)
    expect(new Set(seqs).size).toBe(seqs.length)
    expect(Math.max(...seqs)).toBeGreaterThan(before.length - 1)
    for (const n of net.nodes) {
      const commits = (await getJson(`${n.url}/v1/repos/${net.repoId}/commits`)).commits
      expect(commits.filter((c: any) => c.status === 'disputed')).toEqual([])
      const d = (await getJson(commitUrl(n, c0))).decision
      expect(d.status).toBe('trusted')
      expect(d.equivocators).toEqual([])
    }
  }, 180_000)

  it('with no peer reachable, a node that lost its data directory signs nothing until peers answer', async () => {
    const a = net.nodes[0]
    await Promise.all(net.nodes.map(async (n: any) => await stopNodeProcess(n)))
    rmSync(join(a.dir, 'data'), { recursive: true, force: true })
    a.log = ''
    await start(a)
    await new Promise(resolve => setTimeout(resolve, 6000))
    const status = await getJson(`${a.url}/v1/status`)
    expect(status.ownLog.state).toBe('recovering')
    expect((await getJson(`${a.url}/v1/logs/${net.repoId}/${a.member.keyid}`)).envelopes).toEqual([])
    const cli = await runCli(['status', '--node', a.url])
    expect(cli.stdout).toMatch(/HOLDING SIGNATURES/)
    await Promise.all(net.nodes.slice(1).map(start))
    await waitFor(async () => (await getJson(`${a.url}/v1/status`)).ownLog?.state === 'ready', { timeoutMs: 60_000, what: 'a1 to recover once its peers answer' })
    const head = git('rev-parse', 'HEAD')
    await trustedEverywhere(head)
    for (const n of net.nodes) expect((await getJson(commitUrl(n, head))).decision.equivocators).toEqual([])
  }, 180_000)
})

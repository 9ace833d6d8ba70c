// Decisions a deploy pipeline can act on (issue 9), on real node processes on 127.0.0.1:
// a fast dissenter with a slow fourth organization (pending, never disputed in between).
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtempSync, rmSync, readFileSync, writeFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
// @ts-expect-error plain JS helper shared with the demo
import { createSampleRepo, initNetwork, startNodeProcess, stopNodeProcess, waitFor, getJson, runCli } from '../scripts/devnet.js'

let work: string
const started: any[] = []

function editConfig (node: any, edit: (c: any) => void): void {
  const c = JSON.parse(readFileSync(node.config, 'utf8'))
  edit(c)
  writeFileSync(node.config, JSON.stringify(c, null, 2))
}

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

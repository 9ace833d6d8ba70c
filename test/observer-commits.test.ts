// Issue 14 item 5 and issue 12, on real node processes and a real git repository: an observer
// node (its key is not in the policy, so it signs nothing) lists the commits its own git mirror
// saw on a watched ref before any builder attested them; busy clients ask the list for what
// changed since an event id; a member's commit-index budget comes from its config, and what it
// left out shows in /v1/status, `quorate status` and /metrics.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
// @ts-expect-error plain JS helper shared with the demo
import { createSampleRepo, addCommit, initNetwork, startNodeProcess, stopNodeProcess, waitFor, getJson, runCli, freePort, editConfig } from '../scripts/devnet.js'

interface DevNode { name: string, org: string, url: string, dir: string, config: string, member: { multiaddr: string, keyid: string } }

const RECIPE = { build: ['sh', '-c', 'mkdir -p out && cat VERSION > out/version'], output: 'out', outputKind: 'dir', timeoutSeconds: 60 }

let work: string
let repoDir: string
let net: { nodes: DevNode[], policyFile: string, repoId: string }
let observer: DevNode
const running = new Set<DevNode>()

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'quorate-observer-'))
  repoDir = join(work, 'repo')
  createSampleRepo(repoDir)
  net = await initNetwork({
    dir: join(work, 'nodes'),
    repoUrl: repoDir,
    recipe: RECIPE,
    sandbox: 'none',
    pollSeconds: 1,
    builders: [{ name: 'alpha', org: 'alpha' }, { name: 'beta', org: 'beta' }]
  })
  // an observer: initialized like any node, but its key is not in the policy
  const dir = join(work, 'nodes', 'observer')
  const httpPort = await freePort()
  const init = await runCli(['init', '--dir', dir, '--name', 'observer', '--org', 'observers', '--listen', `/ip4/127.0.0.1/tcp/${await freePort()}`, '--http-port', String(httpPort), '--sandbox', 'none', '--poll-seconds', '1', '--loopback'])
  expect(init.code, init.stderr).toBe(0)
  observer = { name: 'observer', org: 'observers', dir, config: join(dir, 'node.json'), url: `http://127.0.0.1:${httpPort}`, member: JSON.parse(readFileSync(join(dir, 'member.json'), 'utf8')) }
  editConfig(observer, (c: Record<string, unknown>) => { c.policyFile = net.policyFile; c.bootstrap = [] })
}, 120_000)

afterAll(async () => {
  await Promise.all([...running].map(async n => await stopNodeProcess(n)))
  rmSync(work, { recursive: true, force: true })
})

async function start (n: DevNode): Promise<void> {
  await startNodeProcess(n, {})
  running.add(n)
}

async function listed (n: DevNode, query = ''): Promise<any> {
  return await getJson(`${n.url}/v1/repos/${net.repoId}/commits${query}`)
}

describe('the commits list of an observer node', () => {
  it('lists what its own git mirror saw on a watched ref before any builder attested it, and answers ?since= with what changed', async () => {
    await start(observer)
    const status = await getJson(`${observer.url}/v1/status`)
    expect(status.builder).toBeNull()
    // the initial commit of main, from the observer's own mirror (no member node runs: nothing is signed)
    const first = (await runGit(['rev-parse', 'HEAD'])).trim()
    const page = await waitFor(async () => { const l = await listed(observer); return l.commits.length > 0 ? l : undefined }, { timeoutMs: 30_000, what: 'the observer to list its mirror\'s commit' })
    expect(page.commits.map((c: { commit: string }) => c.commit)).toEqual([first])
    expect(page.commits[0].status).toBe('pending')
    expect(page.commits[0].git.subject).toBe('initial sample project')
    expect(page.unverifiedClaims).toEqual([])
    expect(Number.isSafeInteger(page.next)).toBe(true)

    // nothing changed since: an empty answer with the same or a newer event id
    const quiet = await listed(observer, `?since=${page.next}`)
    expect(quiet.commits).toEqual([])
    expect(quiet.removed).toEqual([])
    expect(quiet.since).toBe(page.next)
    expect(quiet.next).toBeGreaterThanOrEqual(page.next)

    // a push: only the new commits, newest first, and the event id to ask with next
    const second = addCommit(repoDir, 'src/two.js', 'export const two = 2\n', 'two')
    const third = addCommit(repoDir, 'src/three.js', 'export const three = 3\n', 'three')
    const changed = await waitFor(async () => { const l = await listed(observer, `?since=${quiet.next}`); return l.commits.length >= 2 ? l : undefined }, { timeoutMs: 30_000, what: 'the pushed commits in ?since=' })
    expect(changed.commits.map((c: { commit: string }) => c.commit)).toEqual([third, second])
    expect(changed.next).toBeGreaterThan(quiet.next)
    expect((await listed(observer, `?since=${changed.next}`)).commits).toEqual([])
    // the whole list: the three commits in git order (the cached page was dropped when the mirror moved)
    expect((await listed(observer)).commits.map((c: { commit: string }) => c.commit)).toEqual([third, second, first])

    // an event id this run never handed out (from before a restart, or another node's): 410, and how to continue
    const gone = await fetch(`${observer.url}/v1/repos/${net.repoId}/commits?since=5`)
    expect(gone.status).toBe(410)
    const goneBody = await gone.json()
    expect(goneBody.error).toMatch(/fetch the list again without \?since=/)
    expect(goneBody.next).toBeGreaterThanOrEqual(changed.next)
    expect((await fetch(`${observer.url}/v1/repos/${net.repoId}/commits?since=${changed.next + 1_000_000}`)).status).toBe(410)
    expect((await fetch(`${observer.url}/v1/repos/${net.repoId}/commits?since=abc`)).status).toBe(400)
    expect((await fetch(`${observer.url}/v1/repos/${net.repoId}/commits?since=${changed.next}&limit=5`)).status).toBe(400)

    // after a restart the ids keep growing: an id of the last run is refused, never misread
    await stopNodeProcess(observer)
    await start(observer)
    expect((await fetch(`${observer.url}/v1/repos/${net.repoId}/commits?since=${changed.next}`)).status).toBe(410)
    // and the mirror's commits are still listed (kept in the store; the watcher reports no move again)
    expect((await listed(observer)).commits.map((c: { commit: string }) => c.commit)).toEqual([third, second, first])
  }, 120_000)
})

describe('the commit-index budget', () => {
  it('comes from the node config; what it leaves out shows in /v1/status, quorate status and /metrics', async () => {
    const alpha = net.nodes[0]
    // a budget of 4 new commits, then 1 an hour: the first observation of main (3 commits) fits, the next push of 2 does not
    editConfig(alpha, (c: Record<string, unknown>) => { c.commitIndexBudget = { burst: 4, perHour: 1 } })
    await start(alpha)
    await waitFor(async () => (await listed(alpha)).commits.length >= 3, { timeoutMs: 30_000, what: 'alpha to observe main' })
    const pushed = [addCommit(repoDir, 'src/four.js', '4\n', 'four'), addCommit(repoDir, 'src/five.js', '5\n', 'five')]
    const status = await waitFor(async () => { const s = await getJson(`${alpha.url}/v1/status`); return s.commitsNotIndexed.length > 0 ? s : undefined }, { timeoutMs: 30_000, what: 'alpha to report commits not indexed' })
    expect(status.commitsNotIndexed).toEqual([{ repoId: net.repoId, keyid: alpha.member.keyid, builder: 'alpha', commits: 2, envelopes: 1 }])
    // its observation is stored (the log keeps no gap) but names no commit in the index: the pushed commits have no envelopes
    const log = await getJson(`${alpha.url}/v1/logs/${net.repoId}/${alpha.member.keyid}`)
    expect(log.envelopes.length).toBeGreaterThanOrEqual(2)
    const lookup = await getJson(`${alpha.url}/v1/repos/${net.repoId}/commits/${pushed[1]}`)
    expect(lookup.envelopes.filter((e: { payload: string }) => JSON.parse(Buffer.from(e.payload, 'base64').toString()).predicateType.includes('ref'))).toEqual([])
    // the node's own mirror still lists them (no signer's budget limits what the node itself saw)
    expect((await listed(alpha)).commits.map((c: { commit: string }) => c.commit).slice(0, 2)).toEqual([pushed[1], pushed[0]])

    const cli = await runCli(['status', '--node', alpha.url])
    expect(cli.code, cli.stderr).toBe(0)
    expect(cli.stdout).toContain(`commits not indexed: ${net.repoId}: 2 commits in 1 ref observation of alpha (${alpha.member.keyid.slice(0, 16)}…), over its commitIndexBudget`)
    const metrics = await (await fetch(`${alpha.url}/metrics`)).text()
    expect(metrics).toContain(`quorate_commits_not_indexed_total{builder="alpha",keyid="${alpha.member.keyid}",repo="${net.repoId}"} 2`)
    expect(metrics).toContain(`quorate_envelopes_not_indexed_total{builder="alpha",keyid="${alpha.member.keyid}",repo="${net.repoId}"} 1`)

    // a bad setting is refused with the field named
    await stopNodeProcess(alpha)
    running.delete(alpha)
    editConfig(alpha, (c: Record<string, unknown>) => { c.commitIndexBudget = { burst: 0 } })
    const bad = await runCli(['node', '--config', alpha.config])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/commitIndexBudget\.burst: must be \{"burst": N, "perHour": N\}/)
  }, 120_000)
})

async function runGit (args: string[]): Promise<string> {
  const { execFileSync } = await import('node:child_process')
  return execFileSync('git', ['-C', repoDir, ...args], { encoding: 'utf8' })
}

// The administrator's "rebuild after a final failure" (DESIGN.md, failure predicate v2), on real
// node processes, real git and real HTTP on 127.0.0.1. The commit's content is fixed: what fails
// is node-side, the organizations' internal package mirror that the fetch phase downloads a
// pinned dependency from. While it is down every builder fails finally (buildAttempts 1) and the
// deploy gate says FAILED; once it is back, each administrator asks their own node to build again.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { createHash } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
// @ts-expect-error plain JS helper shared with the demo
import { createSampleRepo, initNetwork, startNodeProcess, stopNodeProcess, waitFor, getJson, runCli, editConfig, freePort } from '../scripts/devnet.js'

const DEP = 'vendored dependency 1.0: the bytes every builder must download\n'
const DEP_SHA = createHash('sha256').update(DEP).digest('hex')
const TOKEN_A = 'a'.repeat(8) + '-admin-token-of-org-a-' + 'f'.repeat(8)
const TOKEN_C = 'c'.repeat(8) + '-admin-token-of-org-c-' + 'e'.repeat(8)

let work: string
const started: any[] = []
let mirror: Server
/** down: 503; held: requests wait until released; up: serve the file. */
let mirrorState: 'down' | 'held' | 'up' = 'down'
let held: Array<() => void> = []
let mirrorRequests = 0

beforeAll(() => { work = mkdtempSync(join(tmpdir(), 'quorate-admin-rebuild-')) })
afterAll(async () => {
  await Promise.all(started.map(async n => await stopNodeProcess(n)))
  for (const release of held) release()
  await new Promise(resolve => mirror?.close(resolve))
  rmSync(work, { recursive: true, force: true })
})

describe('rebuild after a final failure, asked by each organization\'s administrator', () => {
  it('failed (exit 1) while the mirror is down; refused without the token; after the fix the admins\' rebuilds make it trusted on every node', async () => {
    const port = await freePort()
    mirror = createServer((req, res) => {
      mirrorRequests++
      const serve = (): void => {
        if (req.url !== '/dep-1.0.txt') { res.writeHead(404); res.end(); return }
        res.writeHead(200, { 'content-type': 'text/plain' })
        res.end(DEP)
      }
      if (mirrorState === 'down') { res.writeHead(503); res.end('mirror down for maintenance\n'); return }
      if (mirrorState === 'held') { held.push(serve); return }
      serve()
    })
    await new Promise<void>(resolve => mirror.listen(port, '127.0.0.1', resolve))

    const repo = join(work, 'repo')
    const commit = createSampleRepo(repo)
    const recipe = {
      // The fetch phase downloads the dependency, pinned by its hash; the build phase has no network.
      fetch: ['sh', '-c', `curl -fsS http://127.0.0.1:${port}/dep-1.0.txt -o dep.txt && echo "${DEP_SHA}  dep.txt" | sha256sum -c -`],
      build: ['sh', '-c', 'sh build.sh && cp dep.txt dist/dep.txt'],
      output: 'dist',
      outputKind: 'dir',
      timeoutSeconds: 120
    }
    const net = await initNetwork({ dir: join(work, 'net'), repoUrl: repo, recipe, pollSeconds: 1, builders: [{ name: 'a1', org: 'a' }, { name: 'b1', org: 'b' }, { name: 'c1', org: 'c' }] })
    const [a, b, c] = net.nodes
    writeFileSync(join(a.dir, 'admin-token'), TOKEN_A + '\n', { mode: 0o600 })
    writeFileSync(join(c.dir, 'admin-token'), TOKEN_C + '\n', { mode: 0o600 })
    for (const n of net.nodes) editConfig(n, (cfg: any) => { cfg.buildAttempts = 1; cfg.retryBackoffSeconds = 1 })
    editConfig(a, (cfg: any) => { cfg.adminTokenFile = 'admin-token' })
    editConfig(c, (cfg: any) => { cfg.adminTokenFile = 'admin-token' })
    // b has no admin token: its admin routes are disabled.
    for (const n of net.nodes) { started.push(n); await startNodeProcess(n, {}) }

    const commitUrl = (n: any): string => `${n.url}/v1/repos/${net.repoId}/commits/${commit}`
    const verifyArgs = ['verify', ...net.nodes.flatMap((n: any) => ['--node', n.url]), '--policy', net.policyFile, '--repo', net.repoId, '--commit', commit]
    const tokenFileA = join(a.dir, 'admin-token')
    const ask = async (node: any, opts: { tokenFile?: string, env?: Record<string, string> } = {}): Promise<{ code: number, stdout: string, stderr: string }> =>
      await runCli(['rebuild-request', '--node', node.url, '--repo', net.repoId, '--commit', commit, '--json', ...(opts.tokenFile !== undefined ? ['--token-file', opts.tokenFile] : [])],
        { env: { ...process.env, QUORATE_ADMIN_TOKEN: '', ...(opts.env ?? {}) } })

    // 1. The mirror is down: every builder's only attempt fails, finally. The gate fails.
    const failedRun = await runCli([...verifyArgs, '--wait', '--timeout', '120', '--json'])
    expect(failedRun.code).toBe(1)
    expect(failedRun.stderr).toMatch(/FAILED: .* failed to build: the build failed: [23] final signed failures from [23] builders/)
    expect(failedRun.stderr).toMatch(/the fetch command .* exited with status 22/)
    await waitFor(async () => (await Promise.all(net.nodes.map(async (n: any) => (await getJson(commitUrl(n))).decision))).every(d => d.status === 'failed' && d.failedBuilders.length === 3), { timeoutMs: 60_000, what: 'three final failures on every node' })

    // 2. Without the token nothing changes: no envelope, no job queued, each refusal says why.
    const before = (await getJson(commitUrl(a))).envelopes.length
    const noToken = await fetch(`${a.url}/v1/admin/repos/${net.repoId}/commits/${commit}/rebuild`, { method: 'POST' })
    expect(noToken.status).toBe(401)
    expect((await noToken.json()).error).toMatch(/admin endpoints need "Authorization: Bearer <adminToken>"/)
    const wrong = await fetch(`${a.url}/v1/admin/repos/${net.repoId}/commits/${commit}/rebuild`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN_C}` } })
    expect(wrong.status).toBe(401)
    const disabled = await ask(b, { tokenFile: tokenFileA })
    expect(disabled.code).toBe(2)
    expect(disabled.stderr).toMatch(/HTTP 403: admin endpoints are disabled on this node: set "adminTokenFile" \(or "adminToken"\)/)
    const noTokenCli = await ask(a)
    expect(noTokenCli.code).toBe(2)
    expect(noTokenCli.stderr).toMatch(/rebuild-request needs the node's admin token: --token-file FILE \(mode 0600\) or QUORATE_ADMIN_TOKEN/)
    const unknown = await runCli(['rebuild-request', '--node', a.url, '--repo', net.repoId, '--commit', 'f'.repeat(40), '--token-file', tokenFileA])
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toMatch(/REFUSED: .*this node never built sample@f{40}: nothing to rebuild/)
    const after = await getJson(commitUrl(a))
    expect(after.envelopes.length).toBe(before)
    expect(after.decision.status).toBe('failed')
    expect((await getJson(`${a.url}/v1/status`)).queue.queued).toBe(0)
    expect(a.log).toMatch(/"event":"admin request refused".*"reason":"no token"/)
    expect(a.log).not.toMatch(/"event":"admin rebuild requested"/)

    // 3. Asked too early (the mirror is still down): attempt 2 runs and fails, finally again.
    const early = await ask(a, { tokenFile: tokenFileA })
    expect(early.code).toBe(0)
    expect(JSON.parse(early.stdout)).toMatchObject({ ok: true, reopenedAttempt: 1, nextAttempt: 2 })
    await waitFor(async () => (await getJson(commitUrl(b))).decision.failures.some((f: any) => f.builder === 'a1' && f.attempt === 2 && f.final), { timeoutMs: 60_000, what: 'a1\'s attempt 2, final, at b' })
    expect((await getJson(commitUrl(b))).decision.status).toBe('failed')
    expect(a.log).toMatch(/"event":"admin rebuild requested".*"reopenedAttempt":1/)

    // 4. The mirror is back (requests held for now): both administrators ask. Both organizations
    //    are open again, so the commit is pending everywhere, not failed, and the gate waits.
    mirrorState = 'held'
    const askA = await ask(a, { tokenFile: tokenFileA })
    expect(askA.code).toBe(0)
    expect(askA.stderr).toMatch(/QUEUED: .* attempt 2's final failure is reopened .* attempt 3 is next/)
    const askC = await ask(c, { env: { QUORATE_ADMIN_TOKEN: TOKEN_C } })
    expect(askC.code).toBe(0)
    expect(JSON.parse(askC.stdout)).toMatchObject({ reopenedAttempt: 1, nextAttempt: 2 })
    await waitFor(async () => (await Promise.all(net.nodes.map(async (n: any) => (await getJson(commitUrl(n))).decision.status))).every(s => s === 'pending'), { timeoutMs: 30_000, what: 'pending on every node while a and c rebuild' })
    const pendingRun = await runCli(verifyArgs)
    expect(pendingRun.code).toBe(3)
    const pending = (await getJson(commitUrl(b))).decision
    expect(pending.openOrgs).toEqual(['a', 'c'])
    await waitFor(async () => held.length >= 2, { timeoutMs: 60_000, what: 'both rebuilds to reach the mirror' })

    // 5. The pipeline waits; the mirror answers; both rebuilds succeed and every node (b included,
    //    which did nothing) trusts the result. A success after a final failure is no equivocation.
    const waiting = runCli([...verifyArgs, '--wait', '--timeout', '120'])
    mirrorState = 'up'
    for (const release of held.splice(0)) release()
    const passed = await waiting
    expect(passed.stderr).toMatch(/PASSED: .* is trusted: .*attested by 2 of 3 organizations/)
    expect(passed.code).toBe(0)
    for (const n of net.nodes) {
      const d = await waitFor(async () => { const r = await getJson(commitUrl(n)); return r.decision.status === 'trusted' ? r.decision : undefined }, { timeoutMs: 30_000, what: `trusted on ${n.name}` })
      expect(d.supporters.map((s: any) => s.builder).sort()).toEqual(['a1', 'c1'])
      expect(d.equivocators).toEqual([])
      expect(d.failedBuilders).toEqual(['b1'])
    }
    const files = (await getJson(commitUrl(b))).decision.trusted
    expect(files.narSha256).toMatch(/^[0-9a-f]{64}$/)

    // 6. A success is never rebuilt; a node without the token stays as it was.
    const again = await ask(a, { tokenFile: tokenFileA })
    expect(again.code).toBe(1)
    expect(again.stderr).toMatch(/REFUSED: .* was built successfully by this node .*a success is never rebuilt/)
    expect(mirrorRequests).toBeGreaterThanOrEqual(5)
    // Audit tells the reopenings from the builds' own attempts.
    const audit = await runCli(['audit', ...net.nodes.flatMap((n: any) => ['--node', n.url]), '--policy', net.policyFile, '--commit', commit])
    expect(audit.stdout).toMatch(/failure: a1: attempts 1 \(final\), reopened by an administrator, 2 \(final\), reopened by an administrator/)
    expect(audit.stdout).toMatch(/failure: c1: attempt 1 \(final\), reopened by an administrator/)
  }, 300_000)
})

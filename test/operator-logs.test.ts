// Operators and auditors against real node processes (issue 11): build logs kept, served (also by
// peers through the blob protocol) and shown by `quorate logs` and `quorate audit`; progress of
// running builds in the log and in status; a watched branch the remote lacks; repositories that
// share a URL share a mirror; git metadata in the API; runtime metrics beside ours; private
// repositories whose outputs, logs and file lists need a read token.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtempSync, rmSync, readFileSync, writeFileSync, readdirSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
// @ts-expect-error plain JS helper shared with the demo
import { createSampleRepo, commitAll, initNetwork, startNodeProcess, stopNodeProcess, waitFor, getJson, runCli, editConfig } from '../scripts/devnet.js'

const READ_TOKEN = 'read-token-0123456789abcdef'
// The log carries a per-build nonce (logs differ between honest builders), the output does not.
const SLOW_BUILD = `#!/bin/sh
set -eu
echo "building at $(od -An -N8 -tx8 /dev/urandom)"
sleep 4
rm -rf dist && mkdir -p dist
cat src/*.js > dist/app.js
printf 'version %s\\n' "$(cat VERSION)" > dist/BUILDINFO
if [ -n "\${SECRET_BUILD:-}" ]; then echo "private build" > dist/SECRET; fi
echo "done"
`
const FAILING_BUILD = `#!/bin/sh
echo "compiling widget.c"
echo "widget.c:3: error: expected ';' before '}' token" >&2
exit 2
`

let work: string
let repo: string
let first: string
let net: any
const sha256 = (b: Uint8Array | string): string => createHash('sha256').update(b).digest('hex')

/** The statement inside an envelope of the commit answer. */
function statementOf (env: any): any {
  return JSON.parse(Buffer.from(env.payload, 'base64').toString('utf8'))
}

async function logDigestOf (node: any, repoId: string, commit: string, builderName: string, kind: 'build' | 'failure'): Promise<string> {
  const answer = await getJson(`${node.url}/v1/repos/${repoId}/commits/${commit}`)
  for (const env of answer.envelopes) {
    const st = statementOf(env)
    const builderId: string = st.predicate?.runDetails?.builder?.id ?? st.predicate?.builder?.id ?? ''
    if (!builderId.endsWith(`/${builderName}`)) continue
    if (kind === 'build' && st.predicate?.runDetails !== undefined) return st.predicate.runDetails.byproducts.find((b: any) => b.name === 'build-log').digest.sha256
    if (kind === 'failure' && typeof st.predicate?.logSha256 === 'string' && st.predicate.exitStatus !== undefined) return st.predicate.logSha256
  }
  throw new Error(`no ${kind} envelope of ${builderName} for ${repoId}@${commit}`)
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'quorate-operators-'))
  repo = join(work, 'repo')
  createSampleRepo(repo)
  writeFileSync(join(repo, 'build.sh'), SLOW_BUILD, { mode: 0o755 })
  execFileSync('git', ['-C', repo, 'branch', 'develop'])
  // One commit on main (the slow build replaces the sample's), so that one build runs per repository.
  const date = '1767229200 +0000'
  execFileSync('git', ['-C', repo, 'add', '-A'])
  execFileSync('git', ['-C', repo, 'commit', '-q', '--amend', '--reset-author', '-m', 'Slow build with a log\n\nThe body is not the subject.'], {
    env: { ...process.env, GIT_CONFIG_GLOBAL: '/dev/null', GIT_AUTHOR_NAME: 'Ada Lovelace', GIT_AUTHOR_EMAIL: 'ada@example.org', GIT_COMMITTER_NAME: 'Ada Lovelace', GIT_COMMITTER_EMAIL: 'ada@example.org', GIT_AUTHOR_DATE: date, GIT_COMMITTER_DATE: date }
  })
  first = execFileSync('git', ['-C', repo, 'rev-parse', 'HEAD'], { encoding: 'utf8' }).trim()
  net = await initNetwork({ dir: join(work, 'net'), repoUrl: repo, pollSeconds: 1, builders: [{ name: 'a1', org: 'a' }, { name: 'b1', org: 'b' }] })
  // Three repository ids on one URL: the public one, a private one (another recipe), and one
  // watching a branch the remote does not have.
  const recipe = join(work, 'net', 'recipe.json')
  const secretRecipe = join(work, 'net', 'secret-recipe.json')
  writeFileSync(secretRecipe, JSON.stringify({ build: ['env', 'SECRET_BUILD=1', 'sh', 'build.sh'], output: 'dist', outputKind: 'dir', timeoutSeconds: 120 }))
  const assembled = await runCli(['policy', 'assemble', ...net.nodes.flatMap((n: any) => ['--member', join(n.dir, 'member.json')]),
    '--repo', 'sample', '--url', repo, '--branch', 'main', '--recipe', recipe,
    '--repo', 'secret', '--url', repo, '--branch', 'main', '--recipe', secretRecipe,
    '--repo', 'wrongbranch', '--url', repo, '--branch', 'master', '--recipe', recipe,
    '--out', net.policyFile])
  expect(assembled.code, assembled.stderr).toBe(0)
  // One attempt: a failing build's failure is final at once, so the commit is failed.
  for (const n of net.nodes) editConfig(n, c => { c.progressIntervalSeconds = 1; c.buildAttempts = 1 })
  editConfig(net.nodes[0], c => { c.private = ['secret']; c.readToken = READ_TOKEN })
  await Promise.all(net.nodes.map(async (n: any) => await startNodeProcess(n, {})))
}, 120_000)

afterAll(async () => {
  await Promise.all((net?.nodes ?? []).map(async (n: any) => await stopNodeProcess(n)))
  rmSync(work, { recursive: true, force: true })
})

describe('operators: progress, logs, branches, metrics, private repositories', () => {
  it('shows running builds with phase and elapsed time, logs progress, and says loudly that a watched branch is missing', async () => {
    const [a1] = net.nodes
    const running = await waitFor(async () => {
      const s = await getJson(`${a1.url}/v1/status`)
      return s.running.find((r: any) => r.phase === 'build' && r.elapsedSeconds >= 1) !== undefined ? s : undefined
    }, { timeoutMs: 60_000, intervalMs: 100, what: 'a build in its build phase in /v1/status' })
    const r = running.running.find((x: any) => x.phase === 'build')
    expect(r).toMatchObject({ commit: first, ref: 'refs/heads/main', attempt: 1 })
    expect(['sample', 'secret']).toContain(r.repoId)
    const problem = running.problems.find((p: any) => p.repoId === 'wrongbranch')
    expect(problem).toEqual({
      repoId: 'wrongbranch',
      problem: 'the remote has no branch matching "master" (it has only develop, main); fix "branches" for wrongbranch in the policy',
      missingBranches: ['master'],
      remoteBranches: ['develop', 'main']
    })
    // The next build (of the other repository id) runs right after: catch one in `quorate status`.
    const status = await waitFor(async () => {
      const out = await runCli(['status', '--node', a1.url])
      return /running: /.test(out.stdout) ? out : undefined
    }, { timeoutMs: 30_000, intervalMs: 50, what: 'a running build in quorate status' })
    expect(status.code).toBe(0)
    expect(status.stdout).toMatch(/running: (sample|secret)@[0-9a-f]{12} \(refs\/heads\/main, attempt 1\): \w+ phase for \d+ s, \d+ s in all, log \d+ bytes/)
    expect(status.stdout).toContain('PROBLEM: wrongbranch: the remote has no branch matching "master" (it has only develop, main)')
    // Progress at info level while the build runs (every progressIntervalSeconds), with the log size.
    const progress = await waitFor(async () => (a1.log as string).split('\n').filter(l => l.includes('"build running"')).map(l => JSON.parse(l)).find(l => l.phase === 'build' && l.logBytes > 0), { timeoutMs: 30_000, what: 'a progress line' })
    expect(progress).toMatchObject({ level: 'info', phase: 'build' })
    expect(progress.elapsedS).toBeGreaterThanOrEqual(1)
    const warned = (a1.log as string).split('\n').filter(l => l.includes('watched branch missing')).map(l => JSON.parse(l))
    expect(warned).toHaveLength(1)
    expect(warned[0]).toMatchObject({ level: 'warn', repo: 'wrongbranch', missing: 'master', remoteBranches: 'develop,main' })
    // The three repository ids share one mirror.
    expect(readdirSync(join(a1.dir, 'data', 'git'))).toEqual(['sample.git'])
  }, 90_000)

  it('keeps each build\'s log, serves it (peers too, by the signed digest), prints it with `quorate logs`, and shows git metadata and runtime metrics', async () => {
    const [a1, b1] = net.nodes
    await waitFor(async () => (await getJson(`${b1.url}/v1/repos/sample/commits/${first}`)).decision.status === 'trusted', { timeoutMs: 90_000, what: 'sample trusted' })
    const digest = await logDigestOf(a1, 'sample', first, 'a1', 'build')
    const own = await fetch(`${a1.url}/v1/logs/${digest}`)
    expect(own.status).toBe(200)
    expect(own.headers.get('content-type')).toBe('text/plain; charset=utf-8')
    expect(own.headers.get('x-quorate-log-complete')).toBe('true')
    const text = new Uint8Array(await own.arrayBuffer())
    expect(sha256(text)).toBe(digest)
    expect(Buffer.from(text).toString()).toMatch(/^quorate: build phase: \["sh","build.sh"\]\nbuilding at [0-9a-f ]+\ndone\n/)
    // b1 built the same output with a different log, so it does not hold a1's: it fetches it from a1 by digest.
    expect(await logDigestOf(a1, 'sample', first, 'b1', 'build')).not.toBe(digest)
    const relayed = await fetch(`${b1.url}/v1/logs/${digest}`)
    expect(relayed.status).toBe(200)
    expect(sha256(new Uint8Array(await relayed.arrayBuffer()))).toBe(digest)
    expect((await fetch(`${b1.url}/v1/logs/${'0'.repeat(64)}`)).status).toBe(404)

    const logs = await runCli(['logs', '--node', b1.url, '--repo', 'sample', '--commit', first, '--builder', 'a1', '--policy', net.policyFile])
    expect(logs.code, logs.stderr).toBe(0)
    expect(logs.stdout).toBe(Buffer.from(text).toString())
    expect(logs.stderr).toContain(`matches the signed digest ${digest}`)
    const both = await runCli(['logs', '--node', a1.url, '--repo', 'sample', '--commit', first])
    expect(both.code, both.stderr).toBe(0)
    expect(both.stdout).toMatch(/==> a1 \(a\), build <==\n[\s\S]*==> b1 \(b\), build <==\n/)
    expect(both.stderr).toContain('signatures checked against')

    // Git metadata from the node's mirror, marked unsigned.
    const commits = await getJson(`${a1.url}/v1/repos/sample/commits`)
    expect(commits.commits.map((c: any) => c.commit)).toEqual([first])
    expect(commits.commits[0].git).toEqual({ subject: 'Slow build with a log', author: 'Ada Lovelace', date: '2026-01-01T01:00:00Z', unsigned: true })
    expect((await getJson(`${a1.url}/v1/repos/sample/commits/${first}`)).git).toMatchObject({ subject: 'Slow build with a log', unsigned: true })

    const metrics = await (await fetch(`${a1.url}/metrics`)).text()
    expect(metrics).toMatch(/^nodejs_eventloop_lag_seconds \d/m)
    expect(metrics).toMatch(/^process_cpu_user_seconds_total \d/m)
    expect(metrics).toMatch(/^quorate_build_phase_duration_seconds_count\{phase="build"\} [1-9]/m)
    expect(metrics).toMatch(/^quorate_build_phase_duration_seconds_bucket\{phase="checkout",le="\+Inf"\} [1-9]/m)
    expect(metrics).toMatch(/^quorate_decisions_total\{status="trusted"\} [1-9]/m)
    expect(metrics).toMatch(/^quorate_builds_total\{outcome="success"\} [1-9]/m)
  }, 120_000)

  it('serves a private repository\'s outputs, logs and file lists only with the read token; its attestations stay public', async () => {
    const [a1, b1] = net.nodes
    await waitFor(async () => (await getJson(`${a1.url}/v1/repos/secret/commits/${first}`)).decision.status === 'trusted', { timeoutMs: 90_000, what: 'secret trusted' })
    const answer = await getJson(`${a1.url}/v1/repos/secret/commits/${first}`)
    const fileListSha = answer.decision.trusted.fileListSha256
    const secretFile = answer.envelopes.map(statementOf).flatMap((st: any) => st.subject).find((s: any) => s.name === 'SECRET').digest.sha256
    const digest = await logDigestOf(a1, 'secret', first, 'a1', 'build')
    const auth = { authorization: `Bearer ${READ_TOKEN}` }
    for (const path of [`/v1/logs/${digest}`, `/v1/blobs/${fileListSha}`, `/v1/files/${secretFile}`]) {
      const denied = await fetch(`${a1.url}${path}`)
      expect(denied.status, path).toBe(401)
      expect((await denied.json()).error).toContain('private repository')
      expect((await fetch(`${a1.url}${path}`, { headers: { authorization: 'Bearer wrong-token-0123456789' } })).status).toBe(401)
      expect((await fetch(`${a1.url}${path}`, { headers: auth })).status, path).toBe(200)
    }
    // Peers cannot pull it through the blob protocol either.
    expect((await fetch(`${b1.url}/v1/logs/${digest}`)).status).toBe(404)
    // What the public repository built is still public on the same node.
    const publicList = (await getJson(`${a1.url}/v1/repos/sample/commits/${first}`)).decision.trusted.fileListSha256
    expect((await fetch(`${a1.url}/v1/blobs/${publicList}`)).status).toBe(200)
    const logs = await runCli(['logs', '--node', a1.url, '--repo', 'secret', '--commit', first, '--builder', 'a1', '--policy', net.policyFile])
    expect(logs.code).toBe(1)
    expect(logs.stderr).toContain('no node serves its log')
    const withToken = await runCli(['logs', '--node', a1.url, '--repo', 'secret', '--commit', first, '--builder', 'a1', '--policy', net.policyFile, '--token', READ_TOKEN])
    expect(withToken.code, withToken.stderr).toBe(0)
    expect(withToken.stdout).toContain('building at')
    // quorate fetch of the private output with the token: a1 (private) serves it, verified file by file.
    const out = join(work, 'fetch-secret')
    const fetched = await runCli(['fetch', '--node', a1.url, '--policy', net.policyFile, '--repo', 'secret', '--commit', first, '--out', out, '--token', READ_TOKEN, '--json'])
    expect(fetched.code, fetched.stderr).toBe(0)
    expect(readFileSync(join(out, 'SECRET'), 'utf8')).toBe('private build\n')
    expect(Object.keys(JSON.parse(fetched.stdout).servedBy).some(u => u.startsWith(a1.url))).toBe(true)
  }, 120_000)

  it('keeps a failed build\'s log too, and `quorate audit` and `quorate verify` show its end', async () => {
    const [a1] = net.nodes
    writeFileSync(join(repo, 'build.sh'), FAILING_BUILD, { mode: 0o755 })
    const broken = commitAll(repo, 'Break the build')
    // One final failure already makes it failed (the threshold is out of reach): wait for both builders.
    await waitFor(async () => {
      const d = (await getJson(`${a1.url}/v1/repos/sample/commits/${broken}`)).decision
      return d.status === 'failed' && d.failures.length === 2
    }, { timeoutMs: 60_000, what: 'the commit failed on both builders' })
    const digest = await logDigestOf(a1, 'sample', broken, 'a1', 'failure')
    const body = await (await fetch(`${a1.url}/v1/logs/${digest}`)).text()
    expect(sha256(body)).toBe(digest)
    expect(body).toContain("widget.c:3: error: expected ';' before '}' token")
    const audit = await runCli(['audit', '--node', a1.url, '--policy', net.policyFile, '--repo', 'sample', '--commit', broken])
    expect(audit.stdout).toMatch(/build log of a1 \(a\), attempt 1, sha256 [0-9a-f]{64}, last 10 lines \(checked against the signed digest; from http:\/\/127\.0\.0\.1:\d+\):\n {6}quorate: build phase: \["sh","build.sh"\]\n {6}compiling widget.c\n {6}widget.c:3: error: expected ';' before '}' token\n/)
    const verify = await runCli(['verify', '--node', a1.url, '--policy', net.policyFile, '--repo', 'sample', '--commit', broken])
    expect(verify.code).toBe(1)
    expect(verify.stderr).toMatch(/^FAILED: sample@[0-9a-f]{12} failed to build: .*\n/)
    for (const b of ['a1 (a)', 'b1 (b)']) expect(verify.stderr).toContain(`build log of ${b}, attempt 1, sha256 `)
    expect(verify.stderr).toMatch(/last 15 lines \(checked against the signed digest; from http:\/\/127\.0\.0\.1:\d+\):\n {4}quorate: build phase: \["sh","build.sh"\]\n {4}compiling widget.c\n {4}widget.c:3: error: expected ';' before '}' token\n/)
  }, 90_000)
})

// Operator and auditor features against real node processes: Prometheus metrics, forge
// webhooks, notifications, lookups (latest trusted commit of a ref, digest -> commits),
// `quorate audit` with file-level differences, and diffoscope on two builders' outputs.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtempSync, rmSync, readFileSync, writeFileSync, existsSync, readdirSync } from 'node:fs'
import { createHmac } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { hashOutput } from '@quorate/builder'
import { materializeOutput } from '@quorate/cli'
// @ts-expect-error plain JS helper shared with the demo
import { createSampleRepo, addCommit, initNetwork, startNodeProcess, stopNodeProcess, waitFor, getJson, runCli, editConfig } from '../scripts/devnet.js'

let work: string
let repo: string
let first: string
let trustedNet: any
let disputedNet: any
let hookServer: Server
const hookBodies: string[] = []
const SECRET = 'webhook-secret-0123456789'
const noticeFile = (): string => join(work, 'notices.jsonl')

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'quorate-ops-'))
  repo = join(work, 'repo')
  first = createSampleRepo(repo)
  // Three organizations, threshold 2: two honest builders and a compromised one. Polling is
  // slow (an hour) so that only the webhook can make the nodes notice a new commit quickly.
  trustedNet = await initNetwork({ dir: join(work, 'trusted'), repoUrl: repo, pollSeconds: 3600, builders: [{ name: 'a1', org: 'a' }, { name: 'b1', org: 'b' }, { name: 'c1', org: 'c', tamper: true }] })
  for (const n of trustedNet.nodes) editConfig(n, c => { c.webhookSecret = SECRET })
  // Two organizations, threshold 2, one compromised: a deterministic dispute.
  const notifier = join(work, 'notify.sh')
  writeFileSync(notifier, `#!/bin/sh\ncat >> ${noticeFile()}\n`, { mode: 0o755 })
  disputedNet = await initNetwork({ dir: join(work, 'disputed'), repoUrl: repo, pollSeconds: 1, builders: [{ name: 'x1', org: 'x' }, { name: 'y1', org: 'y', tamper: true }] })
  hookServer = createServer((req, res) => {
    let body = ''
    req.on('data', d => { body += String(d) })
    req.on('end', () => { hookBodies.push(body); res.writeHead(204); res.end() })
  })
  await new Promise<void>(resolve => hookServer.listen(0, '127.0.0.1', resolve))
  const hookUrl = `http://127.0.0.1:${(hookServer.address() as { port: number }).port}/quorate`
  editConfig(disputedNet.nodes[0], c => { c.notify = { command: [notifier], webhookUrl: hookUrl } })
  await Promise.all([...trustedNet.nodes, ...disputedNet.nodes].map(async (n: any) => await startNodeProcess(n, {})))
}, 120_000)

afterAll(async () => {
  await Promise.all([...(trustedNet?.nodes ?? []), ...(disputedNet?.nodes ?? [])].map(async (n: any) => await stopNodeProcess(n)))
  hookServer?.close()
  rmSync(work, { recursive: true, force: true })
})

const commitUrl = (net: any, i: number, c: string): string => `${net.nodes[i].url}/v1/repos/${net.repoId}/commits/${c}`

describe('operations', () => {
  it('serves Prometheus metrics for builds, attestations, peers and decisions', async () => {
    await waitFor(async () => (await getJson(commitUrl(trustedNet, 0, first))).decision.results.length === 2, { timeoutMs: 60_000, what: 'all three builds' })
    // Decisions are recomputed a moment after the envelopes arrive.
    const text = await waitFor(async () => {
      const res = await fetch(`${trustedNet.nodes[0].url}/metrics`)
      expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0.0.4/)
      const body = await res.text()
      return /^quorate_decisions\{status="trusted"\} 1$/m.test(body) ? body : undefined
    }, { timeoutMs: 10_000, what: 'the trusted decision in the metrics' })
    expect(text).toMatch(/^quorate_builds_total\{outcome="success"\} 1$/m)
    expect(text).toMatch(/^quorate_attestations_total\{reason="(gossip|sync)",verdict="accepted"\} [1-9]/m)
    expect(text).toMatch(/^quorate_peers 2$/m)
    expect(text).toMatch(/^quorate_decisions\{status="trusted"\} 1$/m)
    expect(text).toMatch(/^quorate_build_duration_seconds_count\{outcome="success"\} 1$/m)
    expect(text).toMatch(/^# TYPE quorate_attestation_latency_seconds histogram$/m)
  })

  it('streams numbered events, and replays what a reconnecting client missed (Last-Event-ID)', async () => {
    const ctl = new AbortController()
    const res = await fetch(`${trustedNet.nodes[0].url}/v1/events`, { headers: { 'last-event-id': '0' }, signal: ctl.signal })
    expect(res.headers.get('content-type')).toBe('text/event-stream')
    const reader = res.body!.getReader()
    let text = ''
    const deadline = Date.now() + 10_000
    while (!/id: \d+\nevent: \w+\ndata: \{/.test(text) || !text.includes('event: decision')) {
      if (Date.now() > deadline) break
      const { value, done } = await reader.read()
      if (done) break
      text += Buffer.from(value).toString('utf8')
    }
    ctl.abort()
    // Everything since the node started: its own builds, attestations and decisions, numbered
    // from the node's start time (ids keep growing across restarts).
    const ids = [...text.matchAll(/^id: (\d+)$/gm)].map(m => Number(m[1]))
    expect(ids[0]).toBeGreaterThan(Date.parse('2026-01-01') * 1000)
    expect(ids.slice(1).every((id, i) => id === ids[i] + 1)).toBe(true)
    expect(text).toMatch(/^event: decision$/m)
    expect(text).toMatch(/^event: attestation$/m)
  })

  it('builds a pushed commit as soon as a correctly signed webhook arrives, and refuses a forged one', async () => {
    const next = addCommit(repo, 'src/webhook.js', 'export const hook = 1\n', 'webhook commit')
    const body = JSON.stringify({ ref: 'refs/heads/main', after: next })
    const bad = await fetch(`${trustedNet.nodes[0].url}/v1/webhook`, { method: 'POST', body, headers: { 'x-hub-signature-256': 'sha256=' + '0'.repeat(64) } })
    expect(bad.status).toBe(401)
    const unsigned = await fetch(`${trustedNet.nodes[0].url}/v1/webhook`, { method: 'POST', body })
    expect(unsigned.status).toBe(401)
    for (const n of trustedNet.nodes) {
      const sig = 'sha256=' + createHmac('sha256', SECRET).update(body).digest('hex')
      const ok = await fetch(`${n.url}/v1/webhook`, { method: 'POST', body, headers: { 'x-hub-signature-256': sig } })
      expect(ok.status).toBe(202)
    }
    const d = await waitFor(async () => { const r = await getJson(commitUrl(trustedNet, 1, next)); return r.decision.status === 'trusted' ? r : undefined }, { timeoutMs: 30_000, what: 'the webhook-triggered commit to be trusted' })
    expect(d.decision.trusted.supportingOrgs).toEqual(['a', 'b'])
    // Read-only without a token: admin routes refuse.
    expect((await fetch(`${trustedNet.nodes[0].url}/v1/admin/poll`, { method: 'POST' })).status).toBe(403)
  })

  it('answers which commit a ref last had trusted, and which commits produced a digest', async () => {
    const latest = await getJson(`${trustedNet.nodes[0].url}/v1/repos/${trustedNet.repoId}/latest?ref=refs/heads/main`)
    const head = (await getJson(`${trustedNet.nodes[0].url}/v1/repos/${trustedNet.repoId}/commits`)).commits.find((c: any) => c.commit === latest.commit)
    expect(head.status).toBe('trusted')
    expect(latest.observedBy).toEqual(['a', 'b', 'c'])
    const cli = await runCli(['latest', '--node', trustedNet.nodes[1].url, '--repo', trustedNet.repoId, '--ref', 'refs/heads/main', '--policy', trustedNet.policyFile])
    expect(cli.code).toBe(0)
    expect(cli.stdout.trim()).toBe(`${latest.commit} ${latest.narSha256}`)
    const which = await runCli(['which', latest.narSha256, '--node', trustedNet.nodes[2].url])
    expect(which.code).toBe(0)
    expect(which.stdout.trim()).toBe(`${trustedNet.repoId}@${latest.commit} trusted result`)
    // The compromised builder's digest of the same trusted commit is a dissent, never "trusted".
    const tampered = await waitFor(async () => (await getJson(`${trustedNet.nodes[0].url}/v1/repos/${trustedNet.repoId}/commits/${latest.commit}`)).decision.dissenters[0]?.narSha256, { timeoutMs: 30_000, what: 'the dissent' })
    const dissent = await runCli(['which', tampered, '--node', trustedNet.nodes[2].url, '--json'])
    expect(dissent.code).toBe(1)
    expect(JSON.parse(dissent.stdout).commits).toEqual([expect.objectContaining({ commit: latest.commit, role: 'dissent' })])
    expect((await runCli(['which', 'f'.repeat(64), '--node', trustedNet.nodes[2].url])).code).toBe(1)
  })

  it('notifies a command and a webhook when a decision becomes disputed', async () => {
    const d = await waitFor(async () => { const r = await getJson(commitUrl(disputedNet, 0, first)); return r.decision.status === 'disputed' ? r : undefined }, { timeoutMs: 60_000, what: 'a dispute' })
    expect(d.decision.results).toHaveLength(2)
    await waitFor(() => existsSync(noticeFile()) && readFileSync(noticeFile(), 'utf8').includes('"disputed"'), { timeoutMs: 10_000, what: 'the notice' })
    const notice = JSON.parse(readFileSync(noticeFile(), 'utf8').trim().split('\n')[0])
    expect(notice).toMatchObject({ type: 'disputed', repoId: disputedNet.repoId, commit: first, node: 'x1' })
    await waitFor(() => hookBodies.length > 0, { timeoutMs: 10_000, what: 'the notification webhook' })
    expect(JSON.parse(hookBodies[0])).toMatchObject({ type: 'disputed', repoId: disputedNet.repoId, commit: first, node: 'x1' })
  })

  it('audits the dispute down to the file the compromised builder changed, as text, Markdown and JSON', async () => {
    const args = ['audit', ...disputedNet.nodes.flatMap((n: any) => ['--node', n.url]), '--policy', disputedNet.policyFile]
    const text = await runCli(args)
    expect(text.code).toBe(1)
    expect(text.stdout).toContain(`${disputedNet.repoId}@${first}  DISPUTED`)
    expect(text.stdout).toMatch(/changed {2}BUILDINFO {2}content: \d+ [0-9a-f]{16} -> \d+ [0-9a-f]{16}/)
    const json = JSON.parse((await runCli([...args, '--json'])).stdout)
    const finding = json.findings.find((f: any) => f.commit === first)
    expect(finding.differences[0].diff.changed.map((c: any) => c.path)).toEqual(['BUILDINFO'])
    expect(finding.builds.map((b: any) => b.builder)).toEqual(['x1', 'y1'])
    const markdown = (await runCli([...args, '--markdown'])).stdout
    expect(markdown).toContain('| changed (content) | BUILDINFO |')
  })

  it('rebuilds each builder\'s output from its signed file list, and runs diffoscope on the two', async () => {
    const d = (await getJson(commitUrl(disputedNet, 0, first))).decision
    for (const r of d.results) {
      const dest = join(work, `out-${r.narSha256.slice(0, 8)}`)
      await materializeOutput(disputedNet.nodes.map((n: any) => n.url), r.fileListSha256, dest)
      expect((await hashOutput(dest)).narSha256).toBe(r.narSha256)
    }
    const temps = (): string[] => readdirSync(tmpdir()).filter(n => n.startsWith('quorate-diffoscope-'))
    const tempsBefore = temps()
    const nodes = disputedNet.nodes.flatMap((n: any) => ['--node', n.url])
    const diff = await runCli(['audit', ...nodes, '--policy', disputedNet.policyFile, '--diffoscope', first])
    expect(diff.code).toBe(1)
    expect(diff.stdout).toContain('injected by a compromised builder')
    // The real cause leads: no temporary-tree mtimes or directory metadata before it.
    const lines = diff.stdout.split('\n')
    expect(lines.findIndex(l => l.includes('injected by a compromised builder'))).toBeLessThan(25)
    expect(diff.stdout).not.toMatch(/Modify: |stat \{\}|quorate-diffoscope-/)
    expect(lines[0]).toMatch(new RegExp(`^# sample@${first}: x1 \\([0-9a-f]{16}\\) against y1 \\([0-9a-f]{16}\\): different$`))
    expect(diff.stderr).toContain('x1 against y1: different')
    // The auditor picks the builders and where the report goes; temporaries are removed.
    const out = join(work, 'diffoscope.txt')
    const picked = await runCli(['audit', ...nodes, '--policy', disputedNet.policyFile, '--diffoscope', first, '--builders', 'y1,x1', '--out', out])
    expect(picked.code).toBe(1)
    expect(picked.stdout).toBe('')
    expect(readFileSync(out, 'utf8')).toMatch(/^# sample@[0-9a-f]{40}: y1 .* against x1 /)
    expect(readFileSync(out, 'utf8')).toContain('injected by a compromised builder')
    const same = await runCli(['audit', ...nodes, '--policy', disputedNet.policyFile, '--diffoscope', first, '--builders', 'x1,x1'])
    expect(same.code).toBe(0)
    expect(same.stdout).toMatch(/: identical\n/)
    const unknown = await runCli(['audit', ...nodes, '--policy', disputedNet.policyFile, '--diffoscope', first, '--builders', 'x1,zz'])
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toMatch(/zz has no counted build result for sample@[0-9a-f]{40}; builders with one: x1, y1/)
    expect(temps()).toEqual(tempsBefore)
  })
})

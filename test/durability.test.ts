// Work that survives: a node killed with SIGKILL between persisting and publishing an
// attestation republishes it after restart instead of rebuilding (no false equivocation);
// and a builder rotates its key, keeping its history under the new key.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtempSync, rmSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
// @ts-expect-error plain JS helper shared with the demo
import { createSampleRepo, initNetwork, startNodeProcess, stopNodeProcess, waitFor, getJson, runCli } from '../scripts/devnet.js'
import { detectSandbox } from '@quorate/builder'
import { execFileSync } from 'node:child_process'

let work: string
beforeAll(() => { work = mkdtempSync(join(tmpdir(), 'quorate-durable-')) })
afterAll(() => { rmSync(work, { recursive: true, force: true }) })

const editJson = (file: string, edit: (c: any) => void): void => {
  const c = JSON.parse(readFileSync(file, 'utf8'))
  edit(c)
  writeFileSync(file, JSON.stringify(c, null, 2))
}
const payloadOf = (e: any): any => JSON.parse(Buffer.from(e.payload, 'base64').toString('utf8'))
const buildsBy = (envelopes: any[], keyid: string): any[] => envelopes.filter(e => e.signatures[0].keyid === keyid && payloadOf(e).predicateType === 'https://slsa.dev/provenance/v1')

describe('durability', () => {
  it('republishes an attestation persisted just before a kill -9, and never signs the build twice', async () => {
    const repo = join(work, 'crash-repo')
    const commit = createSampleRepo(repo)
    const net = await initNetwork({ dir: join(work, 'crash'), repoUrl: repo, pollSeconds: 1, builders: [{ name: 'steady', org: 's' }, { name: 'crashy', org: 'c' }] })
    const [steady, crashy] = net.nodes
    editJson(crashy.config, c => { c.faultInjection = { crashAfterPersist: true } })
    try {
      await startNodeProcess(steady, {})
      await startNodeProcess(crashy, {})
      const exit = await crashy.exited
      expect(exit.signal).toBe('SIGKILL')
      expect(crashy.log).toMatch(/crashing between persist and publish/)
      // Nothing was published: the steady node has not heard from the crashed one.
      expect((await getJson(`${steady.url}/v1/repos/${net.repoId}/commits/${commit}`)).decision.status).toBe('pending')
      editJson(crashy.config, c => { delete c.faultInjection })
      crashy.log = ''
      await startNodeProcess(crashy, {})
      const d = await waitFor(async () => {
        const r = await getJson(`${steady.url}/v1/repos/${net.repoId}/commits/${commit}`)
        return r.decision.status === 'trusted' ? r : undefined
      }, { timeoutMs: 30_000, what: 'the republished attestation to reach the steady node' })
      expect(d.decision.equivocators).toEqual([])
      const own = buildsBy(d.envelopes, crashy.member.keyid)
      expect(own).toHaveLength(1)
      expect(crashy.log).not.toMatch(/build started/)
      const onCrashy = await getJson(`${crashy.url}/v1/repos/${net.repoId}/commits/${commit}`)
      expect(buildsBy(onCrashy.envelopes, crashy.member.keyid)).toHaveLength(1)
      expect(onCrashy.logs.find((l: any) => l.builder === 'crashy')).toMatchObject({ complete: true })
    } finally {
      await Promise.all(net.nodes.map(async (n: any) => await stopNodeProcess(n)))
    }
  })

  it('rotates a builder key: history re-signed under the new key, the old key revoked and no longer counted', async () => {
    const repo = join(work, 'rotate-repo')
    const commit = createSampleRepo(repo)
    const net = await initNetwork({ dir: join(work, 'rotate'), repoUrl: repo, pollSeconds: 1, builders: [{ name: 'solo', org: 'only' }] })
    const node = net.nodes[0]
    try {
      await startNodeProcess(node, {})
      const before = await waitFor(async () => { const r = await getJson(`${node.url}/v1/repos/${net.repoId}/commits/${commit}`); return r.decision.status === 'trusted' ? r : undefined }, { timeoutMs: 30_000, what: 'trusted' })
      const refused = await runCli(['key', 'rotate', '--config', node.config])
      expect(refused.code).toBe(2)
      expect(refused.stderr).toMatch(/the node is running on .*; stop it first/)
      await stopNodeProcess(node)
      const rotated = await runCli(['key', 'rotate', '--config', node.config])
      expect(rotated.code).toBe(0)
      expect(rotated.stdout).toMatch(/re-signed 2 stored envelopes/)
      const entry = JSON.parse(rotated.stdout.slice(rotated.stdout.indexOf('{'), rotated.stdout.lastIndexOf('}') + 1))
      expect(entry.keys).toHaveLength(2)
      expect(entry.keys[0]).toMatchObject({ publicKey: node.member.publicKey, revoked: true })
      editJson(net.policyFile, p => { p.builders[0] = entry })
      await startNodeProcess(node, {})
      const after = await getJson(`${node.url}/v1/repos/${net.repoId}/commits/${commit}`)
      expect(after.decision.status).toBe('trusted')
      expect(after.decision.trusted.narSha256).toBe(before.decision.trusted.narSha256)
      expect(after.decision.supporters[0].keyid).not.toBe(node.member.keyid)
      expect(after.decision.ignored.some((i: any) => i.keyid === node.member.keyid && /revoked key/.test(i.reason))).toBe(true)
      const status = await getJson(`${node.url}/v1/status`)
      expect(status.keyid).toBe(after.decision.supporters[0].keyid)
    } finally {
      await stopNodeProcess(node)
    }
  })

  it('resumes a build that was running when the node was killed with SIGKILL, leaving no build process behind', async () => {
    const repo = join(work, 'resume-repo')
    const commit = createSampleRepo(repo)
    const sandbox = (await detectSandbox()) ?? 'none'
    const marker = `quorate-resume-marker-${process.pid}`
    const net = await initNetwork({ dir: join(work, 'resume'), repoUrl: repo, pollSeconds: 1, sandbox, recipe: { build: ['sh', '-c', `sleep 4 # ${marker}\nsh build.sh`], output: 'dist', outputKind: 'dir' }, builders: [{ name: 'phoenix', org: 'p' }] })
    const node = net.nodes[0]
    try {
      await startNodeProcess(node, {})
      await waitFor(() => /build started/.test(node.log ?? ''), { timeoutMs: 20_000, what: 'the build to start' })
      node.child.kill('SIGKILL')
      await node.exited
      const stray = (): string => { try { return execFileSync('pgrep', ['-f', marker], { encoding: 'utf8' }) } catch { return '' } }
      if (sandbox === 'bwrap') await waitFor(() => stray() === '', { timeoutMs: 5_000, what: 'the sandboxed build to die with its node' })
      node.log = ''
      await startNodeProcess(node, {})
      const d = await waitFor(async () => { const r = await getJson(`${node.url}/v1/repos/${net.repoId}/commits/${commit}`); return r.decision.status === 'trusted' ? r : undefined }, { timeoutMs: 40_000, what: 'the resumed build to be trusted' })
      expect(node.log).toMatch(/build started/)
      expect(buildsBy(d.envelopes, node.member.keyid)).toHaveLength(1)
    } finally {
      await stopNodeProcess(node)
    }
  })
})

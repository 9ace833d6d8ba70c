// The node's disk filling up is the node's trouble, never the build's: the job waits with a
// clear message in the log and in /v1/status, nothing is signed, and it runs once space is back.
// A real node process, its builds in a real (small) tmpfs given as "buildDir" (tests run as root).
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { execFileSync } from 'node:child_process'
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { open } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
// @ts-expect-error plain JS helper shared with the demo
import { createSampleRepo, initNetwork, startNodeProcess, stopNodeProcess, waitFor, getJson, SAMPLE_RECIPE, editConfig } from '../scripts/devnet.js'

const MiB = 1024 * 1024
let work: string
let disk: string
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'quorate-trouble-'))
  chmodSync(work, 0o755)
  disk = join(work, 'disk')
  mkdirSync(disk)
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=700m,mode=0755', 'tmpfs', disk])
})
afterAll(() => {
  try { execFileSync('umount', ['-l', disk]) } catch {}
  rmSync(work, { recursive: true, force: true })
})

async function fill (leaveBytes: number): Promise<string> {
  const file = join(disk, 'filler')
  const avail = Number(execFileSync('df', ['-B1', '--output=avail', disk], { encoding: 'utf8' }).trim().split('\n')[1])
  const fh = await open(file, 'w')
  const chunk = Buffer.alloc(MiB)
  const bytes = Math.max(0, avail - leaveBytes)
  for (let done = 0; done < bytes; done += chunk.length) await fh.write(chunk, 0, Math.min(chunk.length, bytes - done))
  await fh.close()
  return file
}

describe('a node whose disk is full', () => {
  it('holds the build with a clear status, signs nothing, and builds once space returns', async () => {
    const repo = join(work, 'repo')
    const commit = createSampleRepo(repo)
    // A 64 MiB work-directory quota: the build needs 64 MiB + a 512 MiB reserve free.
    const net = await initNetwork({ dir: join(work, 'net'), repoUrl: repo, pollSeconds: 1, sandbox: 'bwrap', builders: [{ name: 'solo', org: 'solo-org' }], recipe: { ...SAMPLE_RECIPE, maxOutputBytes: 64 * MiB } })
    const [node] = net.nodes
    editConfig(node, (c: any) => { c.buildDir = join(disk, 'builds') })
    const filler = await fill(200 * MiB)
    const lines: unknown[] = []
    await startNodeProcess(node, { onLine: (l: unknown) => lines.push(l) })
    try {
      const waiting = await waitFor(async () => {
        const s = await getJson(`${node.url}/v1/status`)
        return s.nodeProblems.find((p: { commit: string }) => p.commit === commit)
      }, { timeoutMs: 30_000, what: 'the build waiting on the full disk' })
      expect(waiting.problem).toMatch(/the node's disk has \d+ MiB free .* free disk space .* runs when there is room/)
      expect(lines.some(l => JSON.stringify(l).includes('build waits: node trouble'))).toBe(true)
      // Nothing signed about the build: no failure, no result (only the ref observation).
      const answer = await getJson(`${node.url}/v1/repos/${net.repoId}/commits/${commit}`)
      const kinds = (answer.envelopes as Array<{ payload: string }>).map(e => JSON.parse(Buffer.from(e.payload, 'base64').toString('utf8')).predicateType as string)
      expect(kinds.length).toBeGreaterThan(0)
      expect(kinds.filter(k => !k.includes('ref-observation'))).toEqual([])
      rmSync(filler)
      const decided = await waitFor(async () => {
        const d = (await getJson(`${node.url}/v1/repos/${net.repoId}/commits/${commit}`)).decision
        return d.status === 'trusted' ? d : undefined
      }, { timeoutMs: 60_000, what: 'the commit trusted once space returned' })
      expect(decided.trusted.narSha256).toMatch(/^[0-9a-f]{64}$/)
      expect((await getJson(`${node.url}/v1/status`)).nodeProblems).toEqual([])
    } finally {
      await stopNodeProcess(node)
    }
  })
})

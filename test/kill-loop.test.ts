// A bounded kill -9 loop (issue 14 "A standing suite"): two organizations, threshold 2, real node
// processes. One node is SIGKILLed at a random moment 10 times in a row (while it starts, recovers,
// catches up from its peer by sync, builds, signs, persists, publishes), and restarted each time;
// the repository gets new commits while it is up or down. At the end every commit is trusted on
// both nodes, the victim signed exactly one build attestation per commit (none lost, none signed
// twice, no failure signed for a kill), its log is complete, no equivocation proof exists anywhere,
// and no decision seen trusted during the loop changed.
// QUORATE_KILL_CYCLES=N and QUORATE_KILL_SEED=S change the loop (the seed is printed).
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
// @ts-expect-error plain JS helper shared with the demo
import { createSampleRepo, addCommit, initNetwork, startNodeProcess, stopNodeProcess, waitFor, getJson, sleep } from '../scripts/devnet.js'

interface DevNode { name: string, url: string, config: string, member: { keyid: string }, log?: string, child?: { exitCode: number | null, signalCode: string | null, kill: (s: string) => void }, exited?: Promise<{ code: number | null, signal: string | null }> }

const CYCLES = Number(process.env.QUORATE_KILL_CYCLES ?? 10)
const SEED = Number(process.env.QUORATE_KILL_SEED ?? Date.now() % 100_000)
/** A small deterministic generator (mulberry32) so a failing run can be replayed with its seed. */
function rng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Builds take a moment (so kills land inside them) and are reproducible. */
const RECIPE = { build: ['sh', '-c', 'sleep 0.3 && mkdir -p out && cat VERSION > out/version && ls src > out/files'], output: 'out', outputKind: 'dir', timeoutSeconds: 60 }
const BUILD = 'https://slsa.dev/provenance/v1'
const FAILURE = /build-failure/

let work: string
let repo: string
let net: { nodes: DevNode[], repoId: string }
const commits: string[] = []

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'quorate-kill-loop-'))
  repo = join(work, 'repo')
  commits.push(createSampleRepo(repo))
  net = await initNetwork({ dir: join(work, 'nodes'), repoUrl: repo, recipe: RECIPE, pollSeconds: 1, threshold: 2, builders: [{ name: 'steady', org: 'one' }, { name: 'victim', org: 'two' }] })
})

afterAll(async () => {
  if (net !== undefined) await Promise.all(net.nodes.map(async n => await stopNodeProcess(n)))
  rmSync(work, { recursive: true, force: true })
})

async function commitView (node: DevNode, commit: string): Promise<any> {
  return await getJson(`${node.url}/v1/repos/${net.repoId}/commits/${commit}`)
}
const statements = (r: any): Array<{ keyid: string, predicateType: string, seq: number }> => r.envelopes.map((e: any) => {
  const s = JSON.parse(Buffer.from(e.payload, 'base64').toString('utf8'))
  return { keyid: e.signatures[0].keyid, predicateType: s.predicateType, seq: (s.predicate.runDetails?.metadata ?? s.predicate).quorate_log?.seq }
})

describe('kill -9 loop during builds and catch-up', () => {
  it(`survives ${CYCLES} SIGKILLs at random moments: nothing lost, nothing signed twice, no equivocation, decisions unchanged`, { timeout: 90_000 + CYCLES * 8_000 }, async () => {
    const [steady, victim] = net.nodes as [DevNode, DevNode]
    const random = rng(SEED)
    console.log(`kill loop: ${CYCLES} cycles, seed ${SEED} (replay with QUORATE_KILL_SEED=${SEED})`)
    await startNodeProcess(steady, {})
    const trustedSeen = new Map<string, string>()
    const recordTrusted = async (): Promise<void> => {
      for (const c of commits) {
        const d = (await commitView(steady, c)).decision
        if (d.status === 'trusted') {
          const before = trustedSeen.get(c)
          if (before !== undefined) expect(d.trusted.narSha256, `decision for ${c} changed`).toBe(before)
          trustedSeen.set(c, d.trusted.narSha256)
        }
      }
    }
    const kills: Array<{ afterMs: number, phase: string }> = []
    /** Resolves when the victim logs `event` (or after 6 s); true when it did. */
    const logged = async (event: string): Promise<boolean> => {
      const deadline = Date.now() + 6000
      while (Date.now() < deadline) {
        if ((victim.log ?? '').includes(`"event":"${event}"`)) return true
        await sleep(5)
      }
      return false
    }
    for (let cycle = 0; cycle < CYCLES; cycle++) {
      // Where to aim: inside a build, inside the catch-up right after connecting, or anywhere from the start.
      const aim = (['build', 'sync', 'any'] as const)[Math.floor(random() * 3)] as 'build' | 'sync' | 'any'
      if (aim === 'build' || random() < 0.4) commits.push(addCommit(repo, 'VERSION', `1.0.${cycle + 1}\n`, `release ${cycle + 1}`))
      victim.log = ''
      // not awaited: the kill may come before the node answers /healthz
      void startNodeProcess(victim, {}).catch(() => undefined)
      const t0 = Date.now()
      let hit = aim === 'any'
      if (aim === 'build') hit = await logged('build started')
      if (aim === 'sync') hit = await logged('network peer-connected')
      await sleep(Math.floor(random() * (aim === 'any' ? 3000 : 400)))
      if (random() < 0.3) commits.push(addCommit(repo, 'src/extra.js', `export const n = ${cycle}\n`, `change ${cycle}`))
      const log = victim.log ?? ''
      const inBuild = log.lastIndexOf('"event":"build started"') > log.lastIndexOf('"event":"build succeeded"')
      kills.push({ afterMs: Date.now() - t0, phase: `${hit ? aim : 'any'}${inBuild ? ' (mid-build)' : ''}` })
      victim.child?.kill('SIGKILL')
      const exit = await victim.exited
      expect(exit?.signal, `cycle ${cycle}: the victim ended by itself (${exit?.code}):\n${victim.log ?? ''}`).toBe('SIGKILL')
      await recordTrusted()
    }
    console.log(`kills: ${kills.map(k => `${k.afterMs}ms/${k.phase}`).join(', ')}`)
    // Last start: everything settles.
    victim.log = ''
    await startNodeProcess(victim, {})
    const keyid = victim.member.keyid
    try {
      await waitFor(async () => {
        for (const c of commits) {
          for (const n of [steady, victim]) {
            const r = await commitView(n, c)
            if (r.decision.status !== 'trusted') return false
          }
        }
        return true
      }, { timeoutMs: 30_000 + commits.length * 3_000, intervalMs: 500, what: `all ${commits.length} commits trusted on both nodes` })
    } catch (err) {
      // say which commits are stuck where, and what the victim's queue holds
      const lines: string[] = []
      for (const c of commits) {
        for (const n of [steady, victim]) {
          const r = await commitView(n, c).catch((e: Error) => ({ decision: { status: e.message }, envelopes: [] }))
          if (r.decision.status !== 'trusted') lines.push(`${n.name} ${c.slice(0, 10)}: ${r.decision.status} (${r.decision.summary ?? ''}); envelopes ${statements(r).map(s => `${s.keyid === keyid ? 'victim' : 'steady'}:${s.predicateType.split('/').slice(-2).join('/')}#${s.seq}`).join(' ')}`)
        }
      }
      const status = await getJson(`${victim.url}/v1/status`).catch(() => ({}))
      throw new Error(`${(err as Error).message}\n${lines.join('\n')}\nvictim status: ${JSON.stringify(status).slice(0, 3000)}\nvictim log tail:\n${(victim.log ?? '').split('\n').filter(l => !l.includes('"decision"')).slice(-40).join('\n')}`)
    }
    await recordTrusted()
    for (const c of commits) {
      const views = await Promise.all([steady, victim].map(async n => await commitView(n, c)))
      for (const r of views) {
        const own = statements(r).filter(s => s.keyid === keyid)
        expect(own.filter(s => s.predicateType === BUILD), `victim's build attestations for ${c}`).toHaveLength(1)
        expect(own.filter(s => FAILURE.test(s.predicateType)), `victim's failures for ${c}`).toHaveLength(0)
        expect(r.decision.equivocators).toEqual([])
        expect(r.equivocationProofs).toEqual([])
        expect(r.logs.find((l: any) => l.builder === 'victim')).toMatchObject({ complete: true })
      }
      expect(views[0].decision.trusted.narSha256).toBe(views[1].decision.trusted.narSha256)
      expect(trustedSeen.get(c)).toBe(views[0].decision.trusted.narSha256)
    }
    // The victim's log positions are used once each across all its envelopes.
    const seqs = new Map<number, number>()
    for (const c of commits) for (const s of statements(await commitView(steady, c))) if (s.keyid === keyid && s.predicateType === BUILD) seqs.set(s.seq, (seqs.get(s.seq) ?? 0) + 1)
    expect([...seqs.values()].every(n => n === 1)).toBe(true)
    expect(victim.log ?? '').not.toMatch(/equivocation/)
    expect(steady.log ?? '').not.toMatch(/"equivocation"/)
  })
})

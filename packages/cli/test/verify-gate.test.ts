// `quorate verify` as a deploy gate, run as a process on bundles of real signed envelopes:
// statuses and exit codes (DESIGN.md "Interfaces"), messages, --json, --image, --ref, bundle policy.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runCli } from '../../../scripts/devnet.js'
import { builder, policyFor, buildEnvelope, failureEnvelope, refEnvelope, COMMIT, H } from '../../core/test/fixtures.js'
import type { Policy } from '@quorate/core'

const a1 = builder('alice-1', 'alpha', 1)
const b1 = builder('bob-1', 'beta', 3)
const c1 = builder('carol-1', 'gamma', 4)
const d1 = builder('dave-1', 'delta', 5)

let dir: string
beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'quorate-verify-gate-')) })
afterAll(() => { rmSync(dir, { recursive: true, force: true }) })

let n = 0
function files (policy: Policy, envelopes: Uint8Array[], bundlePolicyDigest = policy.digest): { policy: string, bundle: string } {
  n++
  const policyFile = join(dir, `policy-${n}.json`)
  const bundleFile = join(dir, `bundle-${n}.json`)
  writeFileSync(policyFile, JSON.stringify(policy.document))
  writeFileSync(bundleFile, JSON.stringify({
    type: 'https://quorate.dev/bundle/v1', repoId: 'hello', commit: COMMIT, policyDigest: bundlePolicyDigest, createdAt: '2026-01-01T00:00:00Z',
    envelopes: envelopes.map(e => JSON.parse(Buffer.from(e).toString())), equivocationProofs: []
  }))
  return { policy: policyFile, bundle: bundleFile }
}

async function verify (policy: Policy, envelopes: Uint8Array[], extra: string[] = [], bundlePolicyDigest?: string): Promise<{ code: number, stdout: string, stderr: string }> {
  const f = files(policy, envelopes, bundlePolicyDigest)
  return await runCli(['verify', '--bundle', f.bundle, '--policy', f.policy, ...extra])
}

describe('quorate verify exit codes and messages', () => {
  const four = policyFor([a1, b1, c1, d1]) // threshold 3

  it('a fast dissenter does not fail the gate: pending (3) while the fourth organization is open, then 0 naming the dissenter', async () => {
    const early = await verify(four, [buildEnvelope(a1, 'a'), buildEnvelope(b1, 'a'), buildEnvelope(c1, 'b')], ['--json'])
    expect(early.code).toBe(3)
    expect(early.stderr).toMatch(/^FAILED: hello@aaaaaaaaaaaa is pending: best result has 2 of the 3 organizations needed, 1 organization still open; builders disagree so far/)
    expect(early.stderr).not.toMatch(/pending: pending/)
    const report = JSON.parse(early.stdout)
    expect(report).toMatchObject({ status: 'pending', exitCode: 3, openOrgs: ['delta'], dissenters: [] })
    expect(report.results.map((r: { supportingOrgs: string[] }) => r.supportingOrgs)).toEqual([['alpha', 'beta'], ['gamma']])
    const late = await verify(four, [buildEnvelope(a1, 'a'), buildEnvelope(b1, 'a'), buildEnvelope(c1, 'b'), buildEnvelope(d1, 'a')])
    expect(late.code).toBe(0)
    expect(late.stderr).toMatch(/^PASSED: .* is trusted: .*; 1 dissenting builder: carol-1/)
  })

  it('disputed (1) once no result can reach the threshold, with one status word in the message', async () => {
    const r = await verify(four, [buildEnvelope(a1, 'a'), buildEnvelope(b1, 'a'), buildEnvelope(c1, 'b'), buildEnvelope(d1, 'b')])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/is disputed: no result can reach the threshold/)
    expect(r.stderr).not.toMatch(/disputed: disputed/)
  })

  it('a commit failing everywhere is failed (1) at once, naming the reasons', async () => {
    const fails = [a1, b1, c1].map(b => failureEnvelope(b, 0, { final: true, attempt: 3, reason: 'make: *** No rule to make target' }))
    const r = await verify(four, fails, ['--json'])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/failed to build: the build failed: 3 final signed failures .*No rule to make target/)
    expect(JSON.parse(r.stdout)).toMatchObject({ status: 'failed', failures: expect.arrayContaining([expect.objectContaining({ builder: 'alice-1', attempt: 3, final: true })]) })
    // retries still to come: pending
    const retrying = await verify(four, [a1, b1, c1].map(b => failureEnvelope(b, 0, { final: false })))
    expect(retrying.code).toBe(3)
  })

  it('--image --json: stdout is exactly one JSON document, and one FAILED line when the output is a directory', async () => {
    const r = await verify(four, [buildEnvelope(a1, 'a'), buildEnvelope(b1, 'a'), buildEnvelope(d1, 'a')], ['--image', '--json'])
    expect(r.code).toBe(1)
    expect(JSON.parse(r.stdout)).toMatchObject({ status: 'mismatch', images: [] })
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
    expect(r.stderr).toMatch(/^FAILED: .*no OCI image subject/)
    expect(r.stderr).not.toMatch(/PASSED/)
  })

  it('--timeout without --wait is a usage error', async () => {
    const r = await verify(four, [], ['--timeout', '5'])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/--timeout only applies with --wait/)
  })
})

describe('quorate verify --bundle and the policy it was made under', () => {
  const three = policyFor([a1, b1, c1])
  const trusted = [buildEnvelope(a1, 'a'), buildEnvelope(b1, 'a')]

  it('warns (stderr and JSON) when the bundle names another policy digest', async () => {
    const r = await verify(three, trusted, ['--json'], H('9'))
    expect(r.code).toBe(0)
    expect(r.stderr).toMatch(/^WARNING: the bundle was made under policy 9{64}, not the given policy/)
    expect(JSON.parse(r.stdout).warnings[0]).toMatch(/made under policy 9{64}/)
  })

  it('fails with 2 under --policy-digest when the bundle names another policy', async () => {
    const r = await verify(three, trusted, ['--policy-digest', three.digest], H('9'))
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/not the pinned --policy-digest/)
    expect((await verify(three, trusted, ['--policy-digest', three.digest])).code).toBe(0)
  })
})

describe('quorate verify --ref', () => {
  const three = policyFor([a1, b1, c1]) // threshold 2
  const second = 'b'.repeat(40)
  const pushOfTwo = (b: typeof a1): Uint8Array => refEnvelope(b, 1, { commit: second, previous: 'c'.repeat(40), fastForward: true, introduced: [second, COMMIT] })

  it('accepts a commit that a push brought onto the ref without ever being its tip', async () => {
    const r = await verify(three, [buildEnvelope(a1, 'a'), buildEnvelope(b1, 'a'), pushOfTwo(a1), pushOfTwo(b1)], ['--ref', 'refs/heads/main'])
    expect(r.code).toBe(0)
    expect(r.stderr).toMatch(/seen on refs\/heads\/main by alpha, beta/)
  })

  it('is pending (3) while organizations are still open, and 1 once none is', async () => {
    const open = await verify(three, [buildEnvelope(a1, 'a'), buildEnvelope(b1, 'a'), pushOfTwo(a1)], ['--ref', 'refs/heads/main'])
    expect(open.code).toBe(3)
    expect(open.stderr).toMatch(/is trusted, but only 1 of the 2 organizations needed signed that refs\/heads\/main brought this commit \(alpha\) so far/)
    const closed = await verify(three, [buildEnvelope(a1, 'a'), buildEnvelope(b1, 'a'), buildEnvelope(c1, 'a'), pushOfTwo(a1)], ['--ref', 'refs/heads/main'])
    expect(closed.code).toBe(1)
    // nobody saw it on dev, and the one open organization cannot make up two
    expect((await verify(three, [buildEnvelope(a1, 'a'), buildEnvelope(b1, 'a'), pushOfTwo(a1)], ['--ref', 'refs/heads/dev'])).code).toBe(1)
  })
})

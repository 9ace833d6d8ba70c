// Issue 14 item 9 for the deploy gate's output: failure reasons a signer wrote with a bidi
// override (U+202E) and a C1 CSI (U+009B) come out escaped on stderr and in --json, run as a process.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { makeFailureStatement, signStatement } from '@quorate/core'
// @ts-expect-error plain JS helper shared with the demo
import { runCli } from '../../../scripts/devnet.js'
import { builder, policyFor, RECIPE, COMMIT, H } from '../../core/test/fixtures.js'

const REASON = 'exit 2 \u009b2J\u202edeliberately reversed'
const a = builder('alice-1', 'alpha', 1)
const b = builder('bob-1', 'beta', 3)

let dir: string
beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'quorate-verify-escape-')) })
afterAll(() => { rmSync(dir, { recursive: true, force: true }) })

describe('quorate verify with hostile failure reasons', () => {
  it('escapes U+202E and U+009B on stderr and in --json, which still carries the exact reason', async () => {
    const policy = policyFor([a, b])
    const envelopes = [a, b].map(x => signStatement(makeFailureStatement({
      repoId: 'hello', ref: 'refs/heads/main', commit: COMMIT, recipe: RECIPE, exitStatus: 2, timedOut: false, reason: REASON,
      logSha256: H('2'), fingerprint: {}, builderId: `https://quorate.dev/builders/${x.org}/\u202e${x.name}`, finishedOn: '', log: { seq: 0, prev: null }, attempt: 1, final: true
    }), x.key).envelope)
    const policyFile = join(dir, 'policy.json')
    const bundleFile = join(dir, 'bundle.json')
    writeFileSync(policyFile, JSON.stringify(policy.document))
    writeFileSync(bundleFile, JSON.stringify({ type: 'https://quorate.dev/bundle/v1', repoId: 'hello', commit: COMMIT, policyDigest: policy.digest, createdAt: '2026-01-01T00:00:00Z', envelopes, equivocationProofs: [] }))
    const text = await runCli(['verify', '--bundle', bundleFile, '--policy', policyFile])
    expect(text.code).toBe(1)
    expect(text.stderr).toMatch(/^FAILED: /)
    expect(text.stderr).toContain('exit 2 \\u009b2J\\u202edeliberately reversed')
    const json = await runCli(['verify', '--bundle', bundleFile, '--policy', policyFile, '--json'])
    for (const out of [text.stdout, text.stderr, json.stdout, json.stderr]) expect(out).not.toMatch(/[\u202e\u009b]/)
    expect(JSON.parse(json.stdout).failures.map((f: { reason: string }) => f.reason)).toEqual([REASON, REASON])
  })
})

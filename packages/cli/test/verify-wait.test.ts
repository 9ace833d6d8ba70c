// `quorate verify --wait` says what it waits for: when it changes and every ~10 s anyway, with
// the organizations in and those still open. Against a real HTTP server on 127.0.0.1.
import { describe, it, expect, afterAll } from 'vitest'
import { createServer } from 'node:http'
import { verifyUntilFinal } from '../src/verify.js'
import { builder, policyFor, buildEnvelope, COMMIT } from '../../core/test/fixtures.js'

const a1 = builder('alice-1', 'alpha', 1)
const b1 = builder('bob-1', 'beta', 3)
const c1 = builder('carol-1', 'gamma', 4)
const answer = JSON.stringify({ repoId: 'hello', commit: COMMIT, envelopes: [JSON.parse(Buffer.from(buildEnvelope(a1, 'a')).toString())], equivocationProofs: [] })
const server = createServer((req, res) => {
  res.writeHead(req.url === `/v1/repos/hello/commits/${COMMIT}` ? 200 : 404, { 'content-type': 'application/json' })
  res.end(req.url === `/v1/repos/hello/commits/${COMMIT}` ? answer : '{"error":"no"}')
})
afterAll(() => { server.close() })

describe('verify --wait progress', () => {
  it('repeats what it waits for while nothing changes, naming the organizations in and those still open', async () => {
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`
    const said: string[] = []
    const report = await verifyUntilFinal({ nodes: [url], policy: policyFor([a1, b1, c1]), repoId: 'hello', commit: COMMIT }, { wait: true, timeoutMs: 700, intervalMs: 50, progressEveryMs: 200, onProgress: m => said.push(m) })
    expect(report.exitCode).toBe(3)
    expect(report.message).toMatch(/gave up waiting after 1 s/)
    expect(said.length).toBeGreaterThanOrEqual(3)
    for (const m of said) expect(m).toMatch(/^hello@aaaaaaaaaaaa is pending: .* \(\d+ s; organizations in: alpha; still open: beta, gamma\)$/)
  })
})

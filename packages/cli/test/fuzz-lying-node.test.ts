// Property-based fuzzing of the deploy gate against lying nodes: `verifyCommit` (what `quorate
// verify --node …` runs) asks an HTTP server in this process that answers the commit route with
// the genuine envelopes mixed with arbitrary junk (random JSON, mutated envelopes, envelopes
// signed by keys outside the policy, invented equivocation proofs, a fake verdict) or with broken
// HTTP (errors, invalid JSON, wrong shapes). Properties: the gate never throws anything but a
// QuorateError; junk never makes a commit trusted that the genuine envelopes leave pending; junk
// never hides a quorum the node serves; a garbage node beside an honest one changes nothing.
// QUORATE_FUZZ_RUNS=10 multiplies the runs for a longer local session.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import fc from 'fast-check'
import { createServer, type Server } from 'node:http'
import { isQuorateError } from '@quorate/core'
import { verifyCommit, type VerifyReport } from '../src/index.js'
import { builder, policyFor, buildEnvelope, COMMIT, H } from '../../core/test/fixtures.js'

const SCALE = Number(process.env.QUORATE_FUZZ_RUNS ?? 1)
const runs = (n: number): { numRuns: number } => ({ numRuns: Math.max(1, Math.round(n * SCALE)) })

const a = builder('alice', 'alpha', 1)
const b = builder('bob', 'beta', 2)
const c = builder('carol', 'gamma', 3)
const d = builder('dave', 'delta', 4)
const mallory = builder('mallory', 'delta', 66) // not in the policy
const policy = policyFor([a, b, c, d]) // threshold 3 of 4

const json = (bytes: Uint8Array): Record<string, unknown> => JSON.parse(Buffer.from(bytes).toString('utf8')) as Record<string, unknown>
const good = [buildEnvelope(a, '1'), buildEnvelope(b, '1'), buildEnvelope(c, '1')].map(json)
const forged = [buildEnvelope(mallory, '2'), buildEnvelope(mallory, '1', { seq: 1 }), buildEnvelope(mallory, '3', { commit: 'b'.repeat(40) })].map(json)
const otherCommit = json(buildEnvelope(d, '2', { commit: 'c'.repeat(40) }))

type Json = null | boolean | number | string | Json[] | { [k: string]: Json }
/** Junk a lying node adds; mutations start from `pool`, the genuine envelopes it serves. */
const junkArb = (pool: Array<Record<string, unknown>>): fc.Arbitrary<Json> => fc.oneof(
  fc.jsonValue({ maxDepth: 3 }) as fc.Arbitrary<Json>,
  fc.constantFrom(...forged, otherCommit) as fc.Arbitrary<Json>,
  // a genuine envelope with one field replaced
  fc.tuple(fc.constantFrom(...pool), fc.constantFrom('payloadType', 'payload', 'signatures'), fc.jsonValue({ maxDepth: 2 })).map(([e, k, v]) => ({ ...e, [k]: v }) as Json),
  // the signature of one builder under another's keyid, or a fourth organization's keyid on a genuine statement
  fc.tuple(fc.constantFrom(...pool), fc.constantFrom(...pool), fc.boolean()).map(([e1, e2, dave]) => ({
    ...e1,
    signatures: [{ keyid: dave ? d.key.keyid : (e1.signatures as Array<{ keyid: string }>)[0]!.keyid, sig: (e2.signatures as Array<{ sig: string }>)[0]!.sig }]
  }) as Json)
)

interface Answer { status: number, body: string }
let answer: (url: string) => Answer = () => ({ status: 404, body: '{}' })
let server: Server
let url: string
let honestServer: Server
let honestUrl: string
let honestEnvelopes: Json[] = []

beforeAll(async () => {
  server = createServer((req, res) => { const r = answer(req.url ?? '/'); res.writeHead(r.status, { 'content-type': 'application/json' }); res.end(r.body) })
  honestServer = createServer((req, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end(JSON.stringify({ envelopes: honestEnvelopes, equivocationProofs: [] })) })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  await new Promise<void>(resolve => honestServer.listen(0, '127.0.0.1', resolve))
  url = `http://127.0.0.1:${(server.address() as { port: number }).port}`
  honestUrl = `http://127.0.0.1:${(honestServer.address() as { port: number }).port}`
})
afterAll(async () => {
  await new Promise(resolve => server.close(resolve))
  await new Promise(resolve => honestServer.close(resolve))
})

async function gate (nodes: string[]): Promise<VerifyReport | undefined> {
  try {
    return await verifyCommit({ nodes, policy, repoId: 'hello', commit: COMMIT, expectDigest: H('1'), timeoutMs: 5000 })
  } catch (err) {
    if (isQuorateError(err)) return undefined
    throw err
  }
}

const bodyArb = (genuine: Array<Record<string, unknown>>): fc.Arbitrary<Answer> => fc.oneof(
  { weight: 4, arbitrary: fc.record({ junk: fc.array(junkArb(genuine.length > 0 ? genuine : good), { maxLength: 6 }), proofs: fc.array(fc.tuple(junkArb(genuine.length > 0 ? genuine : good), junkArb(genuine.length > 0 ? genuine : good)), { maxLength: 2 }), pos: fc.nat(), verdict: fc.jsonValue({ maxDepth: 2 }) })
    .map(({ junk, proofs, pos, verdict }) => {
      const envelopes = [...junk]
      for (const g of genuine) envelopes.splice(pos % (envelopes.length + 1), 0, g as Json)
      return { status: 200, body: JSON.stringify({ envelopes, equivocationProofs: proofs, decision: verdict, status: 'trusted' }) }
    }) },
  { weight: 1, arbitrary: fc.record({ status: fc.constantFrom(200, 204, 301, 404, 500, 503), body: fc.oneof(fc.string({ maxLength: 40 }), fc.jsonValue({ maxDepth: 3 }).map(v => JSON.stringify(v)), fc.constant('{"envelopes":"x","equivocationProofs":{}}')) }) }
)

describe('fuzz: the deploy gate against lying nodes (verifyCommit)', () => {
  it('never trusts a commit that only two of four organizations attested, whatever a node adds', async () => {
    await fc.assert(fc.asyncProperty(bodyArb(good.slice(0, 2)), async body => {
      answer = () => body
      const r = await gate([url])
      if (r !== undefined) expect(r.status).not.toBe('trusted')
    }), runs(150))
  })

  it('trusts a commit three organizations attested whatever junk the node adds beside their envelopes', async () => {
    await fc.assert(fc.asyncProperty(bodyArb(good).filter(a => a.status === 200 && a.body.includes('"envelopes":[')), async body => {
      answer = () => body
      const r = await gate([url])
      expect(r?.status).toBe('trusted')
    }), runs(100))
  })

  it('a garbage node beside an honest one changes nothing: the honest node\'s quorum still passes', async () => {
    honestEnvelopes = good as Json[]
    await fc.assert(fc.asyncProperty(bodyArb([]), async body => {
      answer = () => body
      const r = await gate([url, honestUrl])
      expect(r?.status).toBe('trusted')
    }), runs(100))
  })
})

// Where a failed build's log is looked for: the signing builder's own endpoint first, then the
// given nodes, then the other builders' endpoints, each asked once. Against real HTTP servers
// on 127.0.0.1 that count what they are asked.
import { describe, it, expect, afterAll } from 'vitest'
import { createServer, type Server } from 'node:http'
import { parsePolicy } from '@quorate/core'
import { failureLogTails } from '../src/build-logs.js'
import { builder, policyFor, failureEnvelope, H } from '../../core/test/fixtures.js'

const servers: Server[] = []
/** Which server was asked, in order. */
const order: string[] = []
afterAll(() => { for (const s of servers) s.close() })

/** A server that has no log (404) and records the paths it was asked for. */
async function counting (): Promise<{ url: string, asked: string[] }> {
  const asked: string[] = []
  const server = createServer((req, res) => {
    asked.push(req.url ?? '')
    order.push(url)
    res.writeHead(404, { 'content-type': 'application/json' })
    res.end('{"error":"no such log"}')
  })
  servers.push(server)
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`
  return { url, asked }
}

describe('failureLogTails', () => {
  it('asks the failing builder\'s endpoint, the nodes and the other endpoints once each, own endpoint first', async () => {
    const a = builder('alice-1', 'alpha', 1)
    const b = builder('bob-1', 'beta', 3)
    const [aliceApi, bobApi, node] = [await counting(), await counting(), await counting()]
    const doc = policyFor([a, b]).document as { builders: Array<Record<string, unknown>> }
    doc.builders[0].endpoint = aliceApi.url
    doc.builders[1].endpoint = bobApi.url
    const policy = parsePolicy(doc, 'policy.json')
    const envelopes = [JSON.parse(Buffer.from(failureEnvelope(a)).toString('utf8')) as object]
    const tails = await failureLogTails(policy, [node.url], 'hello', 'a'.repeat(40), { envelopes, proofs: [] })
    expect(tails).toHaveLength(1)
    expect(tails[0].text).toMatch(/^build log of alice-1 \(alpha\), attempt 1, sha256 2{64}: no node serves it/)
    expect(order).toEqual([aliceApi.url, node.url, bobApi.url])
    for (const s of [aliceApi, bobApi, node]) expect(s.asked).toEqual([`/v1/logs/${H('2')}`])
  })
})

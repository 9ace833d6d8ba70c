import { describe, it, expect, afterEach } from 'vitest'
import { createServer, type Server } from 'node:http'
import { createHash } from 'node:crypto'
import { nodeClient, NodeHttpError } from '../src/node-client.js'

const servers: Server[] = []
afterEach(async () => { for (const s of servers.splice(0)) { s.closeAllConnections(); await new Promise(resolve => s.close(resolve)) } })

/** A stand-in node: answers each request with what `answer` returns, recording the raw request targets. */
async function fakeNode (answer: (path: string) => { status: number, body: string | Buffer } | 'hang'): Promise<{ url: string, paths: string[] }> {
  const paths: string[] = []
  const server = createServer((req, res) => {
    paths.push(req.url ?? '')
    const a = answer(req.url ?? '')
    if (a === 'hang') return
    res.writeHead(a.status, { 'content-type': 'application/json' })
    res.end(a.body)
  })
  servers.push(server)
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}/`, paths }
}

describe('node client', () => {
  it('encodes every path parameter and the query, and returns the typed answer', async () => {
    const node = await fakeNode(() => ({ status: 200, body: JSON.stringify({ repoId: 'a b/c', commits: [] }) }))
    const client = nodeClient(node.url)
    expect(await client.get('commits', { repo: 'a b/c' })).toEqual({ repoId: 'a b/c', commits: [] })
    await expect(client.get('commits', { repo: '..' })).rejects.toThrow(/cannot be a path segment/)
    await expect(client.get('latest', { repo: 'hello' }, { query: { ref: 'refs/heads/a&b' } })).rejects.toThrow(/field "commit" is undefined/)
    expect(node.paths).toEqual(['/v1/repos/a%20b%2Fc/commits', '/v1/repos/hello/latest?ref=refs%2Fheads%2Fa%26b'])
  })

  it('turns a non-2xx answer into an error carrying the status and the node\'s own message', async () => {
    const node = await fakeNode(() => ({ status: 404, body: JSON.stringify({ error: 'unknown repository: not in this node\'s policy' }) }))
    const err = await nodeClient(node.url).get('commits', { repo: 'nope' }).catch(e => e)
    expect(err).toBeInstanceOf(NodeHttpError)
    expect(err.status).toBe(404)
    expect(err.message).toMatch(/HTTP 404: unknown repository/)
  })

  it('refuses an answer without the fields callers read', async () => {
    const node = await fakeNode(() => ({ status: 200, body: JSON.stringify({ commits: 'all good' }) }))
    await expect(nodeClient(node.url).get('commits', { repo: 'hello' })).rejects.toThrow(/field "commits" is string, expected array/)
  })

  it('gives up on a node that does not answer within the timeout', async () => {
    const node = await fakeNode(() => 'hang')
    const t0 = Date.now()
    const err = await nodeClient(node.url).get('status', {}, { timeoutMs: 300 }).catch(e => e)
    expect(err).toBeInstanceOf(NodeHttpError)
    expect(err.status).toBe(0)
    expect(err.message).toMatch(/no answer \(nothing within 0.3 s\)/)
    expect(Date.now() - t0).toBeLessThan(5000)
  })

  it('returns content-addressed bytes only when they hash right and fit the cap', async () => {
    const good = Buffer.from('{"version":1,"files":[]}')
    const sha = createHash('sha256').update(good).digest('hex')
    const node = await fakeNode(path => path.includes(sha) ? { status: 200, body: good } : path.includes('f'.repeat(64)) ? { status: 200, body: 'tampered' } : { status: 404, body: '{}' })
    const client = nodeClient(node.url)
    expect(Buffer.from((await client.bytes('blob', sha))!)).toEqual(good)
    expect(await client.bytes('blob', sha, { maxBytes: 5 })).toBeUndefined()
    expect(await client.bytes('file', 'f'.repeat(64))).toBeUndefined()
    expect(await client.bytes('file', 'e'.repeat(64))).toBeUndefined()
  })
})

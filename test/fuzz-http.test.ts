// Property-based fuzzing of a real node's HTTP API (a node process started by scripts/devnet.js,
// holding a real trusted commit): request targets with random percent-encoding (malformed
// escapes, encoded slashes and dots, overlong UTF-8), repository ids, commits, digests, query
// strings, absolute-form and authority-looking targets, every method. Properties: every request
// is answered (within 5 s) with a status below 500, the node logs no internal error, and it is
// still alive and healthy at the end; no answer carries a private key, the admin token or a host
// file (path tricks); admin calls and webhooks never act without the token or a valid signature;
// slow clients trickling their request heads do not stop it answering (slowloris). Raw sockets
// send each target exactly as generated.
// QUORATE_FUZZ_RUNS=10 multiplies the runs for a longer local session.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import fc from 'fast-check'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
// @ts-expect-error plain JS helper shared with the demo
import { createSampleRepo, initNetwork, startNodeProcess, stopNodeProcess, waitFor, getJson, editConfig } from '../scripts/devnet.js'

const SCALE = Number(process.env.QUORATE_FUZZ_RUNS ?? 1)
const runs = (n: number): { numRuns: number } => ({ numRuns: Math.max(1, Math.round(n * SCALE)) })

interface DevNode { name: string, url: string, httpPort: number, config: string, dir: string, log?: string, child?: { exitCode: number | null, signalCode: string | null } }

const ADMIN_TOKEN = 'fuzz-admin-token-0123456789abcdef'
const WEBHOOK_SECRET = 'fuzz-webhook-secret-0123456789'

let work: string
let node: DevNode
let commit: string
let narSha256: string
let fileListSha256: string
let tried = 0
/** Strings no answer may ever contain: the builder's and the peer's private keys, a host file. */
let secrets: string[] = []

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'quorate-fuzz-http-'))
  const repo = join(work, 'repo')
  commit = createSampleRepo(repo)
  const net = await initNetwork({ dir: join(work, 'nodes'), repoUrl: repo, pollSeconds: 1, builders: [{ name: 'alpha', org: 'alpha' }] })
  node = net.nodes[0]
  editConfig(node, (c: any) => { c.adminToken = ADMIN_TOKEN; c.webhookSecret = WEBHOOK_SECRET })
  secrets = [ADMIN_TOKEN, WEBHOOK_SECRET, 'root:x:0:0']
  for (const f of ['builder-key.json', 'peer-key.json']) {
    const k = JSON.parse(readFileSync(join(node.dir, f), 'utf8')) as Record<string, unknown>
    for (const [name, v] of Object.entries(k)) if (/private|secret/i.test(name) && typeof v === 'string') secrets.push(v)
  }
  expect(secrets.length).toBeGreaterThan(4)
  await startNodeProcess(node, {})
  const d = await waitFor(async () => {
    const r = await getJson(`${node.url}/v1/repos/sample/commits/${commit}`)
    return r.decision.status === 'trusted' ? r : undefined
  }, { timeoutMs: 30_000, what: 'the sample commit to be built and trusted' })
  narSha256 = d.decision.trusted.narSha256
  const payloads = d.envelopes.map((e: { payload: string }) => JSON.parse(Buffer.from(e.payload, 'base64').toString('utf8')))
  const build = payloads.find((p: { predicateType: string }) => p.predicateType === 'https://slsa.dev/provenance/v1')
  fileListSha256 = build.predicate.runDetails.byproducts.find((b: { name: string }) => b.name === 'file-list').digest.sha256
})

afterAll(async () => {
  if (node !== undefined) await stopNodeProcess(node)
  rmSync(work, { recursive: true, force: true })
})

/** One raw HTTP/1.1 request; resolves with the status (0 when the connection closed without one) and the whole answer. Rejects after 5 s. */
function raw (method: string, target: string, headers: Record<string, string> = {}): Promise<{ status: number, head: string, text: string }> {
  return new Promise((resolve, reject) => {
    const s = connect(node.httpPort, '127.0.0.1')
    let buf = ''
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`no answer within 5 s to ${method} ${JSON.stringify(target)}`)) }, 5000)
    const done = (): void => {
      clearTimeout(timer)
      s.destroy()
      const m = /^HTTP\/1\.1 (\d{3})/.exec(buf)
      resolve({ status: m === null ? 0 : Number(m[1]), head: buf.slice(0, buf.indexOf('\r\n\r\n') + 1 || 200), text: buf })
    }
    s.on('data', d => {
      buf += d.toString('latin1')
      // an event stream never ends: its head is the answer
      if (buf.includes('\r\n\r\n') && /content-type: text\/event-stream/i.test(buf)) done()
    })
    s.on('end', done)
    s.on('error', done)
    const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')
    s.write(`${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n${extra}\r\n`)
  })
}

/** Percent-encodes a string character by character, each either raw (when it may appear in a request line) or escaped. */
const encodedArb = (s: fc.Arbitrary<string>): fc.Arbitrary<string> => fc.tuple(s, fc.array(fc.boolean(), { maxLength: 64 })).map(([str, flags]) =>
  [...str].map((ch, i) => {
    const printable = /^[\x21-\x7e]$/.test(ch) && ch !== '%' && ch !== '?' && ch !== '#'
    return printable && flags[i] !== true ? ch : [...Buffer.from(ch, 'utf8')].map(b => `%${b.toString(16).padStart(2, flags[i] === true ? '0' : '0').toUpperCase()}`).join('')
  }).join(''))

const brokenEscapes = fc.constantFrom('%', '%z', '%zz', '%E0%A4%A', '%C0%AF', '%ED%A0%80', '%FF', '%00', '%2F', '%2e%2e', '%25', '%%', '%u0041', '%0D%0A', '%20')
const segmentArb = fc.oneof(
  fc.constantFrom('sample', 'SAMPLE', 'unknown', '.', '..', '', 'sample.', '-x', 'a'.repeat(70)),
  encodedArb(fc.constantFrom('sample', 'sample/..', '../sample', 'samp le')),
  encodedArb(fc.string({ unit: 'binary', maxLength: 16 })),
  fc.array(fc.oneof(brokenEscapes, fc.stringMatching(/^[a-z0-9._~-]{0,4}$/)), { maxLength: 5 }).map(a => a.join(''))
)
const commitArb = (): fc.Arbitrary<string> => fc.oneof(
  fc.constant(commit), fc.constant(commit.toUpperCase()), fc.constant(commit.slice(0, 12)), fc.constant(`${commit}0`),
  fc.stringMatching(/^[0-9a-f]{40}$/), encodedArb(fc.constant(commit)), segmentArb
)
const shaArb = (): fc.Arbitrary<string> => fc.oneof(
  fc.constant(narSha256), fc.constant(fileListSha256), fc.constant(fileListSha256.toUpperCase()), fc.stringMatching(/^[0-9a-f]{64}$/),
  encodedArb(fc.constant(fileListSha256)), segmentArb
)
const queryArb = fc.oneof(
  fc.constant(''), fc.constant('?ref=refs/heads/main'), fc.constant('?ref=refs%2Fheads%2Fmain'),
  fc.array(fc.tuple(fc.constantFrom('ref', 'REF', 'x', ''), fc.oneof(segmentArb, encodedArb(fc.constantFrom('refs/heads/main', 'refs/tags/v1', 'refs/', 'refs/ x')))), { maxLength: 3 })
    .map(ps => `?${ps.map(([k, v]) => `${k}=${v}`).join('&')}`),
  fc.array(brokenEscapes, { maxLength: 4 }).map(a => `?${a.join('')}`)
)

const targetArb = (): fc.Arbitrary<string> => fc.oneof(
  fc.tuple(segmentArb, queryArb).map(([r, q]) => `/v1/repos/${r}/commits${q}`),
  fc.tuple(segmentArb, commitArb(), queryArb).map(([r, c, q]) => `/v1/repos/${r}/commits/${c}${q}`),
  fc.tuple(segmentArb, queryArb).map(([r, q]) => `/v1/repos/${r}/latest${q}`),
  fc.tuple(segmentArb, commitArb(), queryArb).map(([r, c, q]) => `/v1/admin/repos/${r}/commits/${c}/rebuild${q}`),
  fc.tuple(fc.constantFrom('blobs', 'files', 'digests'), shaArb(), queryArb).map(([k, s, q]) => `/v1/${k}/${s}${q}`),
  fc.tuple(fc.constantFrom('/healthz', '/v1/status', '/v1/policy', '/v1/repos', '/metrics', '/', '/index.html', '/v1/events', '/v1/webhook', '/v1/admin/poll'), queryArb).map(([p, q]) => `${p}${q}`),
  fc.array(segmentArb, { maxLength: 5 }).map(a => `/${a.join('/')}`),
  fc.tuple(fc.constantFrom('//', 'http://', 'https://', 'http://[', 'http://a:b:c', '//[', '//a:99999', '*', ''), segmentArb, fc.constantFrom('', '/v1/status', '/healthz')).map(([a, b, c]) => `${a}${b}${c}`)
)

const headersArb = fc.record({
  'Last-Event-ID': fc.oneof(fc.constantFrom('-1', '0', '1e309', '99999999999999999999', 'NaN', ''), fc.stringMatching(/^[0-9]{1,5}$/)),
  Authorization: fc.constantFrom('Bearer ', 'Bearer x', 'Basic abc', 'bearer 0123456789abcdef'),
  'X-Hub-Signature-256': fc.constantFrom('sha256=', `sha256=${'0'.repeat(64)}`, 'x')
}, { requiredKeys: [] })

describe('fuzz: HTTP API parameters against a running node', () => {
  it('answers every request below 500, within 5 s, without an internal error, and stays up', async () => {
    await fc.assert(fc.asyncProperty(fc.constantFrom('GET', 'GET', 'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS'), targetArb(), headersArb, async (method, target, headers) => {
      tried++
      const r = await raw(method, target, headers)
      expect(r.status, `${method} ${target}`).toBeGreaterThanOrEqual(200)
      expect(r.status, `${method} ${target}: ${r.head}`).toBeLessThan(500)
      // path tricks: no answer carries a key, the admin token or a host file
      for (const secret of secrets) expect(r.text.includes(secret), `${method} ${target} answered a secret`).toBe(false)
      // auth: admin and webhook routes never act without the token or a valid signature
      if (method === 'POST' && /admin|webhook/.test(target)) expect(r.status, `${method} ${target}`).toBeGreaterThanOrEqual(300)
    }), runs(400))
    expect(node.child?.exitCode).toBe(null)
    expect(node.child?.signalCode).toBe(null)
    expect((await getJson(`${node.url}/healthz`)).ok).toBe(true)
    expect(node.log ?? '').not.toMatch(/http error|internal error/)
    expect(tried).toBeGreaterThanOrEqual(runs(400).numRuns)
  })

  it('keeps serving the real data: the commit, its file list blob and the digest lookup', async () => {
    expect((await raw('GET', `/v1/repos/sample/commits/${commit}`)).status).toBe(200)
    expect((await raw('GET', `/v1/repos/%73ample/commits/${commit}`)).status).toBe(200)
    expect((await raw('GET', `/v1/blobs/${fileListSha256}`)).status).toBe(200)
    expect((await raw('GET', `/v1/digests/${narSha256}`)).status).toBe(200)
    expect((await raw('GET', '/v1/repos/sample/latest?ref=refs%2Fheads%2Fmain')).status).toBe(200)
  })

  it('answers the targets the fuzzer found with 400 instead of a 500 or a crash', async () => {
    for (const target of ['/v1/repos/%zz/commits', '/v1/repos/%E0%A4%A/latest?ref=refs/heads/main', '//[', 'http://[', '//a:99999/v1/status']) {
      const r = await raw('GET', target)
      expect(r.status, target).toBeGreaterThanOrEqual(400)
      expect(r.status, target).toBeLessThan(500)
    }
    expect(node.child?.exitCode).toBe(null)
  })

  it('refuses admin calls and webhooks with a wrong token or signature, and takes the right ones', async () => {
    await fc.assert(fc.asyncProperty(fc.oneof(fc.string({ maxLength: 40 }), fc.constant(ADMIN_TOKEN.slice(0, -1)), fc.constant(ADMIN_TOKEN.toUpperCase())), async token => {
      const r = await raw('POST', '/v1/admin/poll', { Authorization: `Bearer ${token}`.replace(/[\r\n]/g, '') })
      expect([400, 401]).toContain(r.status)
      const rebuild = await raw('POST', `/v1/admin/repos/sample/commits/${'a'.repeat(40)}/rebuild`, { Authorization: `Bearer ${token}`.replace(/[\r\n]/g, '') })
      expect([400, 401]).toContain(rebuild.status)
      const w = await raw('POST', '/v1/webhook', { 'X-Hub-Signature-256': `sha256=${Buffer.from(token).toString('hex').padEnd(64, '0').slice(0, 64)}`, 'Content-Length': '0' })
      expect([400, 401]).toContain(w.status)
    }), runs(100))
    expect((await raw('POST', '/v1/admin/poll', { Authorization: `Bearer ${ADMIN_TOKEN}` })).status).toBe(200)
  })

  it('keeps answering while 200 slow clients trickle their request heads (slowloris)', async () => {
    const slow = Array.from({ length: 200 }, () => connect(node.httpPort, '127.0.0.1'))
    for (const s of slow) { s.on('error', () => {}); s.write('GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ') }
    try {
      for (let i = 0; i < 10; i++) {
        for (const s of slow) s.write('a')
        expect((await raw('GET', '/healthz')).status).toBe(200)
        await new Promise(resolve => setTimeout(resolve, 50))
      }
    } finally {
      for (const s of slow) s.destroy()
    }
    expect(node.child?.exitCode).toBe(null)
  })

  it('answers HEAD on the event stream with its head (it got no answer at all)', async () => {
    const r = await raw('HEAD', '/v1/events')
    expect(r.status).toBe(200)
    expect(r.head).toMatch(/content-type: text\/event-stream/i)
  })
})

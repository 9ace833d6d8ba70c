// The commits list over real HTTP, on a real store, with envelopes coming in through ingest as
// from gossip (issue 12): a cached page never shows a stale decision, and `?since=<event id>`
// answers only what changed (decisions, commits entering or leaving the list).
import { describe, it, expect, afterEach } from 'vitest'
import { get } from 'node:http'
import { gunzipSync } from 'node:zlib'
import { makeRefObservationStatement, signStatement, type LogPosition } from '@quorate/core'
import { httpApi } from '../src/http-api.js'
import { decisions } from '../src/decisions.js'
import { ingest } from '../src/ingest.js'
import { EventBus } from '../src/events.js'
import { createNodeMetrics } from '../src/metrics.js'
import { buildStatement, builder, policyFor, tempStore, memoryLogger, apiComponents, type TestBuilder } from './helpers.js'

const alpha = builder('alpha', 'a', 1)
const beta = builder('beta', 'b', 2)
const gamma = builder('gamma', 'c', 3)
const policy = policyFor([alpha, beta, gamma], 2)
const C = (n: number): string => n.toString(16).padStart(40, '0')
const MAIN = 'refs/heads/main'
const cleanups: Array<() => Promise<void>> = []
afterEach(async () => { for (const c of cleanups.splice(0).reverse()) await c() })

/** Each builder's log, signed in order (seq and prev follow on). */
function signer (b: TestBuilder) {
  let seq = 0
  let prev: string | null = null
  let tip: string | null = null
  let last: LogPosition = { seq: 0, prev: null }
  const next = (make: (log: LogPosition) => Record<string, unknown>): Uint8Array => {
    last = { seq, prev }
    const s = signStatement(make(last), b.key)
    seq++
    prev = s.id
    return s.bytes
  }
  return {
    observe: (introduced: string[]) => next(log => {
      const st = makeRefObservationStatement({ repoId: 'hello', ref: MAIN, commit: introduced[0], previous: tip, fastForward: tip !== null, introduced, builderId: 'x', observedOn: '2026-01-01T00:00:00Z', log })
      tip = introduced[0]
      return st
    }),
    build: (commit: string, narChar: string) => next(log => buildStatement(narChar, log, commit)),
    /** A second, different envelope at the position just used: equivocation. */
    fork: (commit: string) => signStatement(buildStatement('f', last, commit), b.key).bytes
  }
}

async function startNode () {
  const t = await tempStore()
  const events = new EventBus(1000, 5_000)
  const logger = memoryLogger()
  const metrics = createNodeMetrics({ runtime: false })
  const d = decisions({ announceDelayMs: 5 }, { store: t.store, policy, events, logger, notify: () => {}, metrics })
  d.start()
  const i = ingest({}, { store: t.store, policy, decisions: d, events, metrics, notify: () => {}, logger })
  const api = await httpApi({ host: '127.0.0.1', port: 0, configFile: 'node.json' }, apiComponents({ policy, decisions: d, store: t.store, events, metrics, logger }))
  cleanups.push(async () => { await d.stop(); await t.cleanup() }, api.close)
  const receive = async (...envelopes: Uint8Array[]): Promise<void> => {
    for (const data of envelopes) expect(await i.validate({ repoId: 'hello', data, from: 'peer', via: 'sync' })).toBe('accept')
  }
  const list = async (query = ''): Promise<any> => {
    const res = await fetch(`${api.url}/v1/repos/hello/commits${query}`)
    expect(res.status).toBe(200)
    return await res.json()
  }
  return { receive, list, settled: d.settled, url: api.url }
}

const commitsOf = (body: { commits: Array<{ commit: string, status: string }> }): string[] => body.commits.map(c => `${c.commit.slice(-1)}:${c.status}`)

describe('GET /v1/repos/:repo/commits', () => {
  it('serves a cached page until something on it changes, never a stale decision', async () => {
    const n = await startNode()
    const [a, b] = [signer(alpha), signer(beta)]
    await n.receive(a.observe([C(1)]), b.observe([C(1)]))
    const first = await n.list()
    expect(commitsOf(first)).toEqual(['1:pending'])
    expect(await n.list()).toEqual(first) // the same page, from the cache
    // two organizations agree: the very next page says trusted (the cached one was dropped)
    await n.receive(a.build(C(1), '1'), b.build(C(1), '1'))
    expect(commitsOf(await n.list())).toEqual(['1:trusted'])
    // a page of another size is its own entry, and both follow the next push
    expect(commitsOf(await n.list('?limit=1'))).toEqual(['1:trusted'])
    await n.receive(a.observe([C(2)]), b.observe([C(2)]))
    expect(commitsOf(await n.list('?limit=1'))).toEqual(['2:pending'])
    expect(commitsOf(await n.list())).toEqual(['2:pending', '1:trusted'])
  })

  it('gzips a page for clients that accept it, the same JSON', async () => {
    const n = await startNode()
    const [a, b] = [signer(alpha), signer(beta)]
    await n.receive(a.observe([C(1)]), b.observe([C(1)]))
    await n.settled()
    const raw = (encoding?: string): Promise<{ headers: Record<string, unknown>, body: Buffer }> => new Promise((resolve, reject) => {
      get(`${n.url}/v1/repos/hello/commits`, { headers: encoding === undefined ? {} : { 'accept-encoding': encoding } }, res => {
        const chunks: Buffer[] = []
        res.on('data', (d: Buffer) => chunks.push(d))
        res.on('end', () => resolve({ headers: res.headers, body: Buffer.concat(chunks) }))
      }).on('error', reject)
    })
    const plain = await raw()
    expect(plain.headers['content-encoding']).toBeUndefined()
    const zipped = await raw('br, gzip')
    expect(zipped.headers['content-encoding']).toBe('gzip')
    expect(zipped.headers.vary).toBe('accept-encoding')
    expect(gunzipSync(zipped.body).toString()).toBe(plain.body.toString())
    expect(JSON.parse(plain.body.toString()).commits.map((x: { commit: string }) => x.commit)).toEqual([C(1)])
  })

  it('?since=<event id> answers what changed after it: decisions, commits entering and leaving the list', async () => {
    const n = await startNode()
    const [a, b] = [signer(alpha), signer(beta)]
    await n.receive(a.observe([C(1)]), b.observe([C(1)]))
    await n.settled()
    const full = await n.list()
    expect(commitsOf(full)).toEqual(['1:pending'])
    expect(full.next).toBeGreaterThanOrEqual(5_000)

    const none = await n.list(`?since=${full.next}`)
    expect(none).toMatchObject({ since: full.next, commits: [], removed: [] })

    // a decision changes
    await n.receive(a.build(C(1), '1'), b.build(C(1), '1'))
    await n.settled()
    const decided = await n.list(`?since=${full.next}`)
    expect(commitsOf(decided)).toEqual(['1:trusted'])
    expect(decided.next).toBeGreaterThan(full.next)
    expect((await n.list(`?since=${decided.next}`)).commits).toEqual([])

    // a commit enters the list: only it
    await n.receive(a.observe([C(2)]), b.observe([C(2)]))
    await n.settled()
    const pushed = await n.list(`?since=${decided.next}`)
    expect(commitsOf(pushed)).toEqual(['2:pending'])
    // an older id still answers everything after it, in list order
    expect(commitsOf(await n.list(`?since=${full.next}`))).toEqual(['2:pending', '1:trusted'])

    // beta equivocates: its observations no longer count, so no commit has two organizations' observations
    await n.receive(b.fork(C(2)))
    await n.settled()
    const dropped = await n.list(`?since=${pushed.next}`)
    expect(dropped.commits).toEqual([])
    expect(dropped.removed.sort()).toEqual([C(1), C(2)])
    expect((await n.list()).commits).toEqual([])
    // a client that never saw them learns nothing was removed after its own event
    expect((await n.list(`?since=${dropped.next}`)).removed).toEqual([])
  })

  it('refuses event ids it cannot answer from with 410 and the id to start again from; bad input with 400', async () => {
    const n = await startNode()
    const full = await n.list()
    for (const since of [4_998, full.next + 1]) {
      const res = await fetch(`${n.url}/v1/repos/hello/commits?since=${since}`)
      expect(res.status).toBe(410)
      expect(await res.json()).toEqual({ error: expect.stringMatching(/fetch the list again without \?since= and continue from its "next"$/), next: full.next })
    }
    expect((await fetch(`${n.url}/v1/repos/hello/commits?since=${full.next}`)).status).toBe(200)
    for (const q of ['?since=-1', '?since=1e3', '?since=', `?since=${full.next}&limit=10`]) {
      expect((await fetch(`${n.url}/v1/repos/hello/commits${q}`)).status, q).toBe(400)
    }
  })
})

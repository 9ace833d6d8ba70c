import { describe, it, expect, afterEach } from 'vitest'
import { request } from 'node:http'
import { httpApi, type HttpApiInit } from '../src/http-api.js'
import { decisions } from '../src/decisions.js'
import { EventBus } from '../src/events.js'
import { createNodeMetrics } from '../src/metrics.js'
import { builder, policyFor, tempStore, memoryLogger, until, apiComponents } from './helpers.js'

const policy = policyFor([builder('alpha', 'a', 1), builder('beta', 'b', 2)])
const cleanups: Array<() => Promise<void>> = []
afterEach(async () => { for (const c of cleanups.splice(0).reverse()) await c() })

async function startApi (init: Partial<HttpApiInit> = {}, extra: Partial<Parameters<typeof httpApi>[1]> = {}) {
  const t = await tempStore()
  const events = new EventBus()
  const logger = memoryLogger()
  const metrics = createNodeMetrics()
  const d = decisions({}, { store: t.store, policy, events, logger, notify: () => {}, metrics })
  const api = await httpApi({ host: '127.0.0.1', port: 0, configFile: 'node.json', ...init }, apiComponents({ policy, decisions: d, store: t.store, events, metrics, logger }, extra))
  cleanups.push(t.cleanup, api.close)
  return { api, events, logger }
}

/** A raw GET (the path is sent as given, not normalized), resolving to status and the first body bytes. */
function get (url: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number, body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url)
    const req = request({ host: u.hostname, port: u.port, path, headers }, res => {
      let body = ''
      res.on('data', d => { body += String(d) })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

/** Opens an event stream; resolves once the response head arrived, with what it has read so far. */
function openEvents (url: string, headers: Record<string, string> = {}): Promise<{ status: number, text: () => string, close: () => void }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url)
    let text = ''
    const req = request({ host: u.hostname, port: u.port, path: '/v1/events', headers }, res => {
      res.on('data', d => { text += String(d) })
      res.on('error', () => {})
      resolve({ status: res.statusCode ?? 0, text: () => text, close: () => req.destroy() })
    })
    req.on('error', err => { if ((err as NodeJS.ErrnoException).code !== 'ECONNRESET') reject(err) })
    req.end()
  })
}

describe('HTTP API', () => {
  it('answers malformed percent-encoding in a path with 400 and logs no error for it', async () => {
    const { api, logger } = await startApi()
    for (const path of ['/v1/repos/%E0%A4%A/commits', '/v1/repos/%/latest?ref=refs/heads/main', '/v1/repos/hello%ZZ/commits/' + 'a'.repeat(40)]) {
      const r = await get(api.url, path)
      expect(r.status, path).toBe(400)
      expect(JSON.parse(r.body).error).toMatch(/malformed percent-encoding/)
    }
    expect((await get(api.url, '/v1/repos/%68ello/commits')).status).toBe(200)
    expect((await get(api.url, '/v1/repos/hello/commits?limit=50')).status).toBe(200)
    expect((await get(api.url, '/v1/repos/hello/commits?limit=0')).status).toBe(400)
    expect(logger.lines.filter(l => l.level === 'error')).toEqual([])
  })

  it('answers a request target that is not a URL path (GET //) with 400 and keeps serving', async () => {
    const { api, logger } = await startApi()
    for (const path of ['//', '//x:y@', '/%', '//[']) {
      const r = await get(api.url, path)
      expect(r.status, path).toBeLessThan(500)
    }
    expect((await get(api.url, '//')).status).toBe(400)
    expect((await get(api.url, '/healthz')).status).toBe(200)
    expect(logger.lines.filter(l => l.level === 'error')).toEqual([])
  })

  it('caps event streams per client address and in total, and frees a slot when a client leaves', async () => {
    const { api } = await startApi({ sseMaxClients: 3, sseMaxClientsPerAddress: 2 })
    const a = await openEvents(api.url)
    const b = await openEvents(api.url)
    expect([a.status, b.status]).toEqual([200, 200])
    const c = await openEvents(api.url)
    expect(c.status).toBe(429)
    a.close()
    await until(async () => { const d = await openEvents(api.url); d.close(); return d.status === 200 }, 'a freed slot')
    b.close()
  })

  it('refuses streams beyond the total cap with 503', async () => {
    const { api } = await startApi({ sseMaxClients: 1, sseMaxClientsPerAddress: 5 })
    const a = await openEvents(api.url)
    expect(a.status).toBe(200)
    expect((await openEvents(api.url)).status).toBe(503)
    a.close()
  })

  it('replays at most `sseReplay` missed events to a reconnecting client, the newest ones', async () => {
    const { api, events } = await startApi({ sseReplay: 5 })
    for (let i = 0; i < 30; i++) events.emit({ type: 'build', repoId: 'hello', commit: String(i), phase: 'started' })
    const s = await openEvents(api.url, { 'last-event-id': '0' })
    await until(() => (s.text().match(/^id: /gm) ?? []).length >= 5, 'the replay')
    events.emit({ type: 'build', repoId: 'hello', commit: 'live', phase: 'started' })
    await until(() => s.text().includes('"live"'), 'the live event')
    s.close()
    expect([...s.text().matchAll(/^id: (\d+)$/gm)].map(m => Number(m[1]))).toEqual([26, 27, 28, 29, 30, 31])
  })

  it('refuses admin routes without the admin token (403 when none is set, 401 otherwise), and a rebuild while the node holds its signatures', async () => {
    const token = 'x'.repeat(24)
    const asked: string[] = []
    const post = async (url: string, path: string, auth?: string): Promise<{ status: number, body: any }> => {
      const res = await fetch(`${url}${path}`, { method: 'POST', headers: auth !== undefined ? { authorization: `Bearer ${auth}` } : {} })
      return { status: res.status, body: await res.json() }
    }
    const path = `/v1/admin/repos/hello/commits/${'a'.repeat(40)}/rebuild`
    const off = await startApi()
    expect(await post(off.api.url, path, token)).toMatchObject({ status: 403, body: { error: expect.stringMatching(/admin endpoints are disabled on this node: set "adminTokenFile"/) } })
    const { api, logger } = await startApi({ adminToken: token }, {
      status: async () => ({ name: 'n', builder: 'alpha', keyid: 'k', publicKey: 'p', sandbox: 'none', queue: {}, stats: {}, ownLog: { state: 'recovering', reason: 'r', answeredOrgs: [], requiredOrgs: 1, recovered: 0 } }),
      requestRebuild: async (repoId, commit) => { asked.push(`${repoId}@${commit}`); return { ok: true, repoId, commit, nextAttempt: 2 } }
    })
    expect((await post(api.url, path)).status).toBe(401)
    expect((await post(api.url, path, token.slice(1) + 'y')).status).toBe(401)
    expect((await get(api.url, path)).status).toBe(405)
    expect(await post(api.url, path, token)).toMatchObject({ status: 409, body: { code: 'holding-signatures' } })
    expect(await post(api.url, `/v1/admin/repos/nope/commits/${'a'.repeat(40)}/rebuild`, token)).toMatchObject({ status: 404 })
    expect(asked).toEqual([])
    expect(logger.lines.filter(l => l.event === 'admin request refused').map(l => l.reason)).toEqual(['no token', 'wrong token'])
  })
})

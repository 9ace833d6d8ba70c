// Property-based fuzzing of the node config parser (node.json, written by operators and by
// `quorate init`). Properties: any file content loads into a config or fails with a
// QuorateError('CONFIG_INVALID') naming the file (never a TypeError); a valid config round-trips.
// QUORATE_FUZZ_RUNS=10 multiplies the runs for a longer local session.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import fc from 'fast-check'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { isQuorateError } from '@quorate/core'
import { loadNodeConfig, type NodeConfig } from '../src/config.js'

const SCALE = Number(process.env.QUORATE_FUZZ_RUNS ?? 1)
const runs = (n: number): { numRuns: number } => ({ numRuns: Math.max(1, Math.round(n * SCALE)) })

let dir: string
let file: string
beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'quorate-fuzz-config-')); file = join(dir, 'node.json') })
afterAll(() => { rmSync(dir, { recursive: true, force: true }) })

function load (text: string): NodeConfig | undefined {
  writeFileSync(file, text)
  try {
    return loadNodeConfig(file)
  } catch (err) {
    if (isQuorateError(err, 'CONFIG_INVALID') && err.message.startsWith(file)) return undefined
    throw err
  }
}

const FIELDS = ['private', 'readToken', 'progressIntervalSeconds', 'retention', 'roots', 'sandboxUser', 'buildDir', 'fetchNetwork', 'fetchCache', 'name', 'dataDir', 'builderKeyFile', 'peerKeyFile', 'policyFile', 'listen', 'announce', 'bootstrap', 'http', 'adminToken', 'adminTokenFile', 'sandbox', 'pollIntervalSeconds', 'backfill', 'concurrency', 'buildAttempts', 'retryBackoffSeconds', 'keyIsNew', 'loopbackNetwork', 'credentials', 'faultInjection', 'webhookSecret', 'notify', 'mdns'] as const

const validArb = fc.record({
  name: fc.string({ minLength: 1, maxLength: 12 }),
  dataDir: fc.constantFrom('data', 'd/e'),
  listen: fc.array(fc.constantFrom('/ip4/127.0.0.1/tcp/4001', '/ip4/0.0.0.0/tcp/0'), { maxLength: 2 }),
  bootstrap: fc.array(fc.constant('/ip4/192.0.2.7/tcp/4001/p2p/12D3KooWabc'), { maxLength: 2 }),
  http: fc.record({ host: fc.constantFrom('127.0.0.1', '::1'), port: fc.integer({ min: 0, max: 65535 }) }),
  adminToken: fc.string({ minLength: 16, maxLength: 40 }),
  sandbox: fc.constantFrom('bwrap', 'none'),
  sandboxUser: fc.record({ uid: fc.integer({ min: 1, max: 2 ** 31 }), gid: fc.integer({ min: 1, max: 2 ** 31 }) }),
  fetchNetwork: fc.record({ deny: fc.array(fc.constantFrom('10.0.0.0/8', '192.0.2.0/24'), { maxLength: 2 }), allow: fc.array(fc.constantFrom('198.51.100.7/32'), { maxLength: 1 }) }),
  pollIntervalSeconds: fc.integer({ min: 1, max: 86_400 }),
  backfill: fc.integer({ min: 1, max: 10_000 }),
  concurrency: fc.integer({ min: 1, max: 64 }),
  buildAttempts: fc.integer({ min: 1, max: 100 }),
  keyIsNew: fc.boolean(),
  loopbackNetwork: fc.boolean(),
  credentials: fc.dictionary(fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,10}$/), fc.oneof(fc.record({ token: fc.string() }), fc.record({ sshKeyFile: fc.constant('/etc/quorate/id') })), { maxKeys: 2 }),
  notify: fc.record({ webhookUrl: fc.constant('https://hooks.example/q'), command: fc.array(fc.string({ maxLength: 8 }), { minLength: 1, maxLength: 3 }) }, { requiredKeys: [] })
}, { requiredKeys: [] })

const hostile = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.constantFrom(null, -1, 0, 1.5, 2 ** 53, '', '/', 'x', [], {}, [null], { uid: 0, gid: 0 }, { deny: ['::1/128'] }, { deny: ['300.0.0.0/8'] }, { __proto__: 1 }, ['/ip4/1.2.3.4'])
)

describe('fuzz: node config parser', () => {
  it('loads every generated valid config with its values, paths resolved next to the file', () => {
    fc.assert(fc.property(validArb, raw => {
      const c = load(JSON.stringify(raw))
      expect(c).toBeDefined()
      if (raw.dataDir !== undefined) expect(c!.dataDir).toBe(join(dir, raw.dataDir))
      if (raw.http !== undefined) expect(c!.http).toEqual(raw.http)
      if (raw.concurrency !== undefined) expect(c!.concurrency).toBe(raw.concurrency)
      if (raw.listen !== undefined) expect(c!.listen).toEqual(raw.listen)
      if (raw.sandboxUser !== undefined) expect(c!.sandboxUser).toEqual(raw.sandboxUser)
    }), runs(60))
  })

  it('refuses any field set to a hostile value with CONFIG_INVALID naming the file, or loads a config', () => {
    fc.assert(fc.property(validArb, fc.constantFrom(...FIELDS), hostile, (raw, field, value) => {
      const c = load(JSON.stringify({ ...raw, [field]: value }))
      if (c === undefined) return
      expect(c.http.port).toBeGreaterThanOrEqual(0)
      expect(c.concurrency).toBeGreaterThanOrEqual(1)
      if (c.sandboxUser !== undefined) expect(c.sandboxUser.uid).toBeGreaterThan(0)
    }), runs(200))
  })

  it('refuses arbitrary file content (not JSON, not an object, unknown fields) with CONFIG_INVALID', () => {
    fc.assert(fc.property(fc.oneof(
      fc.string({ unit: 'binary', maxLength: 80 }),
      fc.jsonValue({ maxDepth: 3 }).map(v => JSON.stringify(v)),
      fc.dictionary(fc.string({ maxLength: 10 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }).map(v => JSON.stringify(v))
    ), text => { load(text) }), runs(150))
  })
})

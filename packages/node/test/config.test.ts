import { describe, it, expect, afterEach } from 'vitest'
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadNodeConfig } from '../src/config.js'
import { defaultVerifyWorkers } from '../src/verify-pool.js'
import { createLogger, escapeForTerminal } from '../src/logger.js'

const dirs: string[] = []
afterEach(() => { for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true }) })

function configFile (content: unknown): string {
  const d = mkdtempSync(join(tmpdir(), 'quorate-config-'))
  dirs.push(d)
  const f = join(d, 'node.json')
  writeFileSync(f, typeof content === 'string' ? content : JSON.stringify(content))
  return f
}

describe('loadNodeConfig', () => {
  it('fills defaults and resolves paths relative to the config file', () => {
    const f = configFile({ name: 'n1', dataDir: 'd', sandbox: 'none' })
    const c = loadNodeConfig(f)
    expect(c.dataDir).toBe(join(f, '..', 'd'))
    expect(c.builderKeyFile).toBe(join(f, '..', 'builder-key.json'))
    expect(c).toMatchObject({ sandbox: 'none', pollIntervalSeconds: 30, backfill: 10, concurrency: 1, loopbackNetwork: false, http: { host: '127.0.0.1', port: 8080 } })
  })

  it('takes verifyWorkers (default from the core count) and refuses what is not a count of threads', () => {
    expect(loadNodeConfig(configFile({})).verifyWorkers).toBe(defaultVerifyWorkers())
    expect(loadNodeConfig(configFile({ verifyWorkers: 0 })).verifyWorkers).toBe(0)
    expect(loadNodeConfig(configFile({ verifyWorkers: 3 })).verifyWorkers).toBe(3)
    for (const bad of [-1, 1.5, 17, '2']) expect(() => loadNodeConfig(configFile({ verifyWorkers: bad }))).toThrow(/verifyWorkers.*whole number from 0 to 16/)
  })

  it('refuses a data directory that other users can write, and says how to fix it', () => {
    const f = configFile({ dataDir: 'data' })
    const data = join(f, '..', 'data')
    expect(loadNodeConfig(f).dataDir).toBe(data) // not there yet: the node creates it 0700
    for (const mode of [0o777, 0o770, 0o1777, 0o702]) {
      mkdirSync(data, { recursive: true })
      chmodSync(data, mode)
      expect(() => loadNodeConfig(f), mode.toString(8)).toThrow(`dataDir ${data} is writable by other users (mode ${(mode & 0o777).toString(8)}); run "chmod go-w ${data}"`)
    }
    chmodSync(data, 0o755)
    expect(loadNodeConfig(f).dataDir).toBe(data)
    chmodSync(data, 0o700)
    expect(loadNodeConfig(f).dataDir).toBe(data)
  })

  it('defaults to the bubblewrap sandbox: building unisolated must be chosen explicitly', () => {
    expect(loadNodeConfig(configFile({})).sandbox).toBe('bwrap')
  })

  it('names the file and the field for each mistake', () => {
    const msg = (content: unknown): string => { try { loadNodeConfig(configFile(content)); return 'ok' } catch (e) { return (e as Error).message } }
    expect(msg('{"name": "x",}')).toMatch(/node.json: the node config is not valid JSON/)
    expect(msg({ sandbox: 'docker' })).toMatch(/node.json: sandbox: must be "bwrap" \(default\) or "none"/)
    expect(msg({ listen: ['127.0.0.1:4001'] })).toMatch(/listen: must be a list of multiaddrs/)
    expect(msg({ http: { port: 70000 } })).toMatch(/http.port: must be a port number/)
    expect(msg({ adminToken: 'short' })).toMatch(/adminToken: must be a string of at least 16 characters/)
    expect(msg({ credentials: { 'https://x': { token: 't' } } })).toMatch(/credentials.https:\/\/x: keys must be repository ids/)
    expect(msg({ pollIntervalSecs: 3 })).toMatch(/pollIntervalSecs: unknown field/)
    expect(msg([])).toMatch(/must be a JSON object/)
    expect(msg({ private: ['app'] })).toMatch(/readToken: private repositories need a "readToken" \(or an "adminToken"\)/)
    expect(msg({ private: ['no spaces allowed'], readToken: 'r'.repeat(16) })).toMatch(/private: must be a list of repository ids/)
    expect(msg({ readToken: 'short' })).toMatch(/readToken: must be a string of at least 16 characters/)
    expect(msg({ retention: { maxAge: 3 } })).toMatch(/retention.maxAge: unknown field; allowed: maxAgeDays, maxBuilds, maxBytes, intervalMinutes/)
    expect(msg({ retention: { maxBuilds: -1 } })).toMatch(/retention.maxBuilds: must be a whole number/)
    expect(msg({ decisionCache: { answers: 3 } })).toMatch(/decisionCache.answers: unknown field; allowed: decisionMiB, answerMiB/)
    expect(msg({ decisionCache: { decisionMiB: -1 } })).toMatch(/decisionCache.decisionMiB: must be a whole number from 0/)
    expect(msg({ retention: [30] })).toMatch(/retention: must be an object such as/)
    expect(msg({ decisionCache: 'big' })).toMatch(/decisionCache: must be an object such as/)
    expect(msg({ retention: { maxAgeDays: 40_000 } })).toMatch(/retention.maxAgeDays: must be a whole number from 0 to 36500/)
    expect(loadNodeConfig(configFile({ decisionCache: { answerMiB: 256 } })).decisionCache).toEqual({ decisionMiB: 128, answerMiB: 256 })
    expect(loadNodeConfig(configFile({ private: ['app'], readToken: 'r'.repeat(16) }))).toMatchObject({ private: ['app'], readToken: 'r'.repeat(16), progressIntervalSeconds: 15, retention: { maxAgeDays: 30, maxBuilds: 0, maxBytes: 0, intervalMinutes: 60 } })
    expect(() => loadNodeConfig('/nonexistent/node.json')).toThrow(/cannot read the node config \(ENOENT\)/)
  })

  it('reads the npm fetch cache setting (opt-in, bwrap only), paths relative to the file', () => {
    const msg = (content: unknown): string => { try { loadNodeConfig(configFile(content)); return 'ok' } catch (e) { return (e as Error).message } }
    expect(loadNodeConfig(configFile({})).fetchCache).toBeUndefined()
    const f = configFile({ fetchCache: { npm: true, maxBytes: 1_000_000, dir: 'fc' } })
    expect(loadNodeConfig(f).fetchCache).toEqual({ npm: true, maxBytes: 1_000_000, maxAgeDays: 30, dir: join(f, '..', 'fc') })
    expect(msg({ fetchCache: { npm: true }, sandbox: 'none' })).toMatch(/node.json: fetchCache: needs the bwrap sandbox/)
    expect(msg({ fetchCache: { pip: true } })).toMatch(/node.json: fetchCache.pip: unknown field; allowed: npm, maxBytes, maxAgeDays, dir/)
    expect(msg({ fetchCache: { npm: 'yes' } })).toMatch(/fetchCache.npm: must be true or false/)
  })
})

describe('adminTokenFile', () => {
  it('reads the admin token from a 0600 file next to the config, and refuses a readable, short or doubled one', () => {
    const f = configFile({ adminTokenFile: 'admin-token' })
    const tokenFile = join(f, '..', 'admin-token')
    const msg = (content: unknown, file = f): string => { try { loadNodeConfig(file === f ? f : configFile(content)); return 'ok' } catch (e) { return (e as Error).message } }
    expect(msg(undefined)).toMatch(/adminTokenFile: cannot read .*admin-token \(ENOENT\); create it with "openssl rand -hex 24 > .*admin-token && chmod 600/)
    writeFileSync(tokenFile, 't'.repeat(32) + '\n', { mode: 0o644 })
    chmodSync(tokenFile, 0o644)
    expect(msg(undefined)).toMatch(/adminTokenFile: .*admin-token is readable by other users \(mode 644\); run "chmod 600 /)
    chmodSync(tokenFile, 0o600)
    expect(loadNodeConfig(f).adminToken).toBe('t'.repeat(32))
    writeFileSync(tokenFile, 'short\n')
    expect(msg(undefined)).toMatch(/adminTokenFile: .* must hold one token of at least 16 characters/)
    expect(msg({ adminTokenFile: 'x', adminToken: 'a'.repeat(16) }, 'other')).toMatch(/adminTokenFile: give either "adminTokenFile" or "adminToken", not both/)
  })
})

describe('logger', () => {
  it('escapes control characters from signer-chosen strings in text and keeps JSON lines parseable', () => {
    const lines: string[] = []
    const text = createLogger({ format: 'text', write: l => lines.push(l) })
    text.info('decision', { builder: 'evil\n12:00:00 INFO forged line\u001b[2J' })
    expect(lines[0]).not.toMatch(/\n|\u001b/)
    expect(lines[0]).toContain('\\n12:00:00')
    const json = createLogger({ format: 'json', name: 'n', write: l => lines.push(l) })
    json.warn('x', { s: 'a\nb' })
    expect(JSON.parse(lines[1])).toMatchObject({ level: 'warn', node: 'n', event: 'x', s: 'a\nb' })
    expect(escapeForTerminal('ok\u2028')).toBe('ok\\u2028')
  })

  it('escapes bidi and C1 controls (U+202E, U+009B) from signers in text and JSON lines', () => {
    const lines: string[] = []
    const fields = { builder: 'mallory\u202eic-lla', reason: 'exit 1 \u009b2J\u2066x\u2069', spaced: 'a b\u202ec' }
    createLogger({ format: 'text', write: l => lines.push(l) }).warn('build failed', fields)
    createLogger({ format: 'json', write: l => lines.push(l) }).warn('build failed', fields)
    for (const line of lines) {
      expect(line).not.toMatch(/[\u202e\u009b\u2066\u2069]/)
      expect(line).toContain('mallory\\u202eic-lla')
      expect(line).toContain('\\u009b2J')
    }
    expect(lines[0]).toContain('spaced="a b\\u202ec"')
    // The JSON line still parses to the signer's exact strings.
    expect(JSON.parse(lines[1])).toMatchObject(fields)
  })
})

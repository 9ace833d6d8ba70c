import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  keyPairFromSeed, makeProvenanceStatement, parsePolicy, signStatement, checkEnvelope,
  type BuilderKeyPair, type Policy, type Recipe, type LogPosition, type VerifiedAttestation
} from '@quorate/core'
import { Store } from '@quorate/store'
import { createLogger, type Logger } from '../src/logger.js'
import { outputs } from '../src/outputs.js'
import type { HttpApiComponents } from '../src/http-api.js'

export const RECIPE: Recipe = { build: ['sh', '-c', 'mkdir -p out && echo hi > out/a'], output: 'out', outputKind: 'dir' }
export const COMMIT = 'a'.repeat(40)
export const OTHER_COMMIT = 'b'.repeat(40)
export const H = (c: string): string => c.repeat(64)

export interface TestBuilder { name: string, org: string, key: BuilderKeyPair }

export function builder (name: string, org: string, seedByte: number): TestBuilder {
  return { name, org, key: keyPairFromSeed(new Uint8Array(32).fill(seedByte)) }
}

export function policyFor (builders: TestBuilder[], threshold?: number): Policy {
  return parsePolicy({
    version: 1,
    builders: builders.map(b => ({ name: b.name, org: b.org, keys: [{ publicKey: b.key.publicKeyHex }] })),
    repositories: [{ id: 'hello', url: '/srv/hello.git', branches: ['main'], recipe: RECIPE }],
    quorum: threshold !== undefined ? { threshold } : {}
  }, 'test-policy.json')
}

export function buildStatement (narChar: string, log: LogPosition, commit = COMMIT): Record<string, unknown> {
  return makeProvenanceStatement({
    repoId: 'hello',
    ref: 'refs/heads/main',
    commit,
    recipe: RECIPE,
    narSha256: H(narChar),
    fileListSha256: H(narChar),
    topLevelFiles: [],
    logSha256: H('1'),
    fingerprint: { sandbox: 'none' },
    builderId: 'https://quorate.dev/builders/test',
    invocationId: 'inv',
    startedOn: '2026-01-01T00:00:00Z',
    finishedOn: '2026-01-01T00:00:01Z',
    log
  })
}

/** A signed build envelope of `b` at log position `seq` (prev is a placeholder past 0). */
export function buildEnvelope (b: TestBuilder, narChar: string, opts: { seq?: number, commit?: string } = {}): Uint8Array {
  const seq = opts.seq ?? 0
  return signStatement(buildStatement(narChar, { seq, prev: seq === 0 ? null : H('e') }, opts.commit), b.key).bytes
}

export function verified (bytes: Uint8Array, policy: Policy): VerifiedAttestation {
  const c = checkEnvelope(bytes, policy)
  if (c.verdict !== 'accept') throw new Error(`test envelope refused: ${c.reason}`)
  return c.verified
}

/** A real LevelDB store in a temp directory; `cleanup` closes it and removes the directory. */
export async function tempStore (): Promise<{ store: Store, dir: string, reopen: () => Promise<Store>, cleanup: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'quorate-node-test-'))
  let store = await Store.open(join(dir, 'db'))
  return {
    get store () { return store },
    dir,
    reopen: async () => { await store.close(); store = await Store.open(join(dir, 'db')); return store },
    cleanup: async () => { await store.close().catch(() => {}); rmSync(dir, { recursive: true, force: true }) }
  }
}

/** A logger that keeps its lines (JSON) for assertions. */
export function memoryLogger (): Logger & { lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = []
  const logger = createLogger({ format: 'json', debug: true, write: l => lines.push(JSON.parse(l)) })
  return Object.assign(logger, { lines })
}

/** Resolves when `check` returns true, polling every 10 ms; fails after `timeoutMs`. */
export async function until (check: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

/**
 * httpApi's components around a real store, decisions and event bus: real outputs, a stand-in
 * network and status (no libp2p node), polling does nothing. `extra` overrides or adds components.
 */
export function apiComponents (
  parts: Pick<HttpApiComponents, 'policy' | 'decisions' | 'events' | 'metrics' | 'logger'> & { store: Store },
  extra: Partial<HttpApiComponents> = {}
): HttpApiComponents {
  return {
    ...parts,
    outputs: outputs({ store: parts.store, logger: parts.logger }),
    network: { peerId: '12D3KooWtest', multiaddrs: () => [], connectedPeers: () => [], stats: () => ({}) as never },
    status: async () => ({ name: 'n', builder: null, keyid: 'k', publicKey: 'p', sandbox: 'none', queue: {}, stats: {} }),
    poll: async () => {},
    ...extra
  }
}

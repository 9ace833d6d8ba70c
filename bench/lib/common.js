// Shared by the benchmark scripts: the quick/full switch, result rows, machine load, and the
// signed-envelope fixtures (node:crypto Ed25519, cached under $TMPDIR between runs, never timed).
import { createHash, createPrivateKey, sign as cryptoSign } from 'node:crypto'
import { appendFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  IN_TOTO_PAYLOAD_TYPE, canonicalBytes, keyPairFromSeed, makeProvenanceStatement, makeRefObservationStatement,
  parsePolicy, preAuthEncoding
} from '@quorate/core'

export const QUICK = process.argv.includes('--quick') || process.env.BENCH_QUICK === '1'
export const CACHE = join(tmpdir(), 'quorate-bench-v2')
mkdirSync(CACHE, { recursive: true })

export const RECIPE = { build: ['sh', 'build.sh'], output: 'dist', outputKind: 'dir' }
export const hex = (n, len = 40) => n.toString(16).padStart(len, '0')
export const fmt = (n, d = 0) => Number(n).toLocaleString('en', { maximumFractionDigits: d, minimumFractionDigits: d })
export const secs = (ms) => `${(ms / 1000).toFixed(2)} s`
export const sleep = (ms) => new Promise(resolve => setTimeout(resolve, ms))
export const load = () => loadavg().map(x => x.toFixed(2)).join(' ')

/**
 * One result row: what was measured, the limit it is compared with in the same run, and the ratio
 * (oriented as the target states it). Printed (ratio last) and appended to the run's file.
 */
export function record (row) {
  const full = { ...row, quick: QUICK, load: load(), at: new Date().toISOString() }
  if (process.env.BENCH_RESULTS !== undefined) appendFileSync(process.env.BENCH_RESULTS, JSON.stringify(full) + '\n')
  console.log(`  ${row.benchmark}: ${row.figure}  |  limit: ${row.limit}  |  load ${full.load}`)
  console.log(`  ratio ${row.ratio === null || row.ratio === undefined ? 'n/a' : Number(row.ratio).toFixed(2)} (target ${row.target}${row.meets === undefined ? '' : row.meets ? ', met' : ', NOT met'})`)
}

/** Ed25519 builder keys: public half via core (keyid), private half as node:crypto KeyObjects (fast signing). */
export function makeKeys (count, base = 1) {
  return Array.from({ length: count }, (_, i) => {
    const seed = new Uint8Array(32).fill(base + i)
    const kp = keyPairFromSeed(seed)
    const priv = createPrivateKey({ key: { kty: 'OKP', crv: 'Ed25519', d: Buffer.from(seed).toString('base64url'), x: Buffer.from(kp.publicKeyHex, 'hex').toString('base64url') }, format: 'jwk' })
    return { ...kp, priv, org: `org${i}`, name: `b${i}` }
  })
}

export function policyDocument (keys, repos) {
  return {
    version: 1,
    builders: keys.map(k => ({ name: k.name, org: k.org, keys: [{ publicKey: k.publicKeyHex }] })),
    repositories: repos.map(id => ({ id, url: `https://git.example/${id}.git`, branches: ['main'], recipe: RECIPE })),
    quorum: {}
  }
}
export const makePolicy = (keys, repos) => parsePolicy(policyDocument(keys, repos), 'bench-policy')

/** Signs a statement exactly as core's signStatement does (canonical JSON, DSSE, compact JSON), with node:crypto. */
export function signFast (statement, key) {
  const payload = canonicalBytes(statement)
  const pae = preAuthEncoding(IN_TOTO_PAYLOAD_TYPE, payload)
  const sig = cryptoSign(null, pae, key.priv)
  const envelope = { payloadType: IN_TOTO_PAYLOAD_TYPE, payload: Buffer.from(payload).toString('base64'), signatures: [{ keyid: key.keyid, sig: sig.toString('base64') }] }
  return { bytes: Buffer.from(JSON.stringify(envelope)), id: createHash('sha256').update(pae).digest('hex') }
}

/**
 * The envelopes of one (key, repository) log, seq ascending and prev-linked: per commit a ref
 * observation then a build attestation (about 1.6 KB each), like a builder following a branch.
 */
export function * logEnvelopes (key, repoId, count, k = 0) {
  let prev = null
  const builderId = `https://quorate.dev/builders/${key.org}/${key.name}`
  for (let seq = 0; seq < count; seq++) {
    const commit = hex(Math.floor(seq / 2) + 1)
    const log = { seq, prev }
    const statement = seq % 2 === 0
      ? makeRefObservationStatement({ repoId, ref: 'refs/heads/main', commit, previous: seq >= 2 ? hex(Math.floor(seq / 2)) : null, fastForward: seq >= 2, introduced: [commit], builderId, observedOn: '2026-01-01T00:00:00Z', log })
      : makeProvenanceStatement({
        repoId, ref: 'refs/heads/main', commit, recipe: RECIPE, narSha256: hex(seq, 64), fileListSha256: hex(seq + 1, 64),
        topLevelFiles: [{ name: 'app.js', sha256: hex(seq + 2, 64) }], logSha256: hex(seq + 3 + k, 64),
        fingerprint: { os: 'Debian GNU/Linux 12', kernel: '6.1.0', cpu: 'bench', sandbox: 'bwrap', tools: { sh: 'dash 0.5.12' } },
        builderId, invocationId: `inv-${k}-${seq}`, startedOn: '2026-01-01T00:00:00Z', finishedOn: '2026-01-01T00:01:00Z', log
      })
    const signed = signFast(statement, key)
    yield signed.bytes
    prev = signed.id
  }
}

/**
 * N envelopes over `keys` × `repos` logs, interleaved the way a network delivers them (commit by
 * commit, each builder's ref observation and build), kept in one file per size.
 */
export function envelopeFixture (keys, repos, n) {
  const file = join(CACHE, `envelopes-${keys.length}k-${repos.length}r-${n}.bin`)
  if (existsSync(file)) return readFrames(readFileSync(file))
  const t = performance.now()
  const out = []
  for (const chunk of envelopeChunks(keys, repos, n)) out.push(...chunk)
  writeFrames(file, out)
  console.log(`  signed ${fmt(n)} envelopes with node:crypto in ${secs(performance.now() - t)} (cached in ${file})`)
  return out
}

function writeFrames (file, frames) {
  const parts = []
  for (const f of frames) { const len = Buffer.alloc(4); len.writeUInt32LE(f.byteLength); parts.push(len, f) }
  const tmp = file + '.tmp'
  rmSync(tmp, { force: true })
  appendFileSync(tmp, Buffer.concat(parts))
  renameSync(tmp, file)
}

function readFrames (buf) {
  const out = []
  for (let off = 0; off < buf.length;) {
    const len = buf.readUInt32LE(off)
    out.push(new Uint8Array(buf.buffer, buf.byteOffset + off + 4, len))
    off += 4 + len
  }
  return out
}

/** Statistics over latencies in ms. */
export function percentile (values, p) {
  const s = [...values].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(p / 100 * s.length))]
}

/**
 * A LevelDB store holding the given envelopes (parsed, not re-verified: they were signed by the
 * fixture), written with putEnvelopes in large batches; cached by name, complete or rebuilt.
 */
export async function storeFixture (name, policy, envelopeChunks) {
  const { Store } = await import('@quorate/store')
  const { checkEnvelope } = await import('@quorate/core')
  const dir = join(CACHE, name)
  const done = join(dir, 'complete.json')
  if (existsSync(done)) {
    // open once, untimed: a store written by an older release is migrated here, not in a timed row;
    // and the linked prefix of every log is recorded, as the writes of a node that ingested them
    // would have done (fixtures written before the store kept them have none)
    const store = await Store.open(join(dir, 'db'))
    if (typeof store.putEnvelopes === 'function') for (const h of await store.logHeads()) await store.logComplete(h.repoId, h.keyid, h.seq)
    await store.close()
    return { dir: join(dir, 'db'), ...JSON.parse(readFileSync(done, 'utf8')) }
  }
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  const t = performance.now()
  const store = await Store.open(join(dir, 'db'))
  let count = 0
  let bytes = 0
  const trust = { has: () => true }
  for (const chunk of envelopeChunks) {
    const items = chunk.map(b => {
      const c = checkEnvelope(b, policy, { verifiedIds: trust })
      if (c.verdict !== 'accept') throw new Error(`fixture envelope refused: ${c.reason}`)
      bytes += b.byteLength
      return { verified: c.verified, bytes: b }
    })
    // (a store without putEnvelopes: an older release, for before/after runs)
    if (typeof store.putEnvelopes === 'function') await store.putEnvelopes(items)
    else await Promise.all(items.map(async i => await store.putEnvelope(i.verified, i.bytes)))
    count += items.length
    if (count % 100_000 < chunk.length) console.log(`  … ${fmt(count)} stored (${secs(performance.now() - t)}, load ${load()})`)
  }
  await store.close()
  const meta = { count, envelopeBytes: bytes }
  appendFileSync(done, JSON.stringify(meta))
  console.log(`  fixture ${name}: ${fmt(count)} envelopes written in ${secs(performance.now() - t)} (not timed)`)
  return { dir: join(dir, 'db'), ...meta }
}

/** Yields arrays of `size` envelopes interleaved over the logs of keys × repos, n in all, without holding them all. */
export function * envelopeChunks (keys, repos, n, size = 2000) {
  const perLog = Math.ceil(n / (keys.length * repos.length))
  const gens = []
  for (const r of repos) for (const [i, key] of keys.entries()) gens.push(logEnvelopes(key, r, perLog, i))
  let chunk = []
  let total = 0
  while (total < n) {
    let any = false
    for (const g of gens) {
      for (let j = 0; j < 2 && total < n; j++) {
        const x = g.next()
        if (x.done) continue
        any = true
        chunk.push(x.value)
        total++
        if (chunk.length >= size) { yield chunk; chunk = [] }
      }
    }
    if (!any) break
  }
  if (chunk.length > 0) yield chunk
}

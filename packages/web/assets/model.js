// Pure logic of the auditor dashboard: routes, hashing, DSSE decoding, file-list and
// fingerprint comparison. No DOM and no network here, so the same module runs in the browser
// (imported by app.js) and under vitest (packages/web/test/model.test.ts).
//
// Everything these functions receive came from a node or a signer: they validate shapes and
// return plain data; app.js inserts every string with textContent.

export const REPO_ID = /^[a-z0-9][a-z0-9._-]{0,63}$/
export const COMMIT_SHA = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/
export const SHA256_HEX = /^[0-9a-f]{64}$/

// ---- display escaping: the same rule as core's display-escape.ts (a test keeps the two equal).
// C0/C1 controls, the bidi marks, embeddings, overrides and isolates, and the line/paragraph
// separators become a visible \uXXXX: a text node is never parsed as HTML, but U+202E in one
// still reverses what the reader sees ("exe.txt" shown as "txt.exe").
// eslint-disable-next-line no-control-regex
export const UNSAFE_DISPLAY_CHAR = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/g
// eslint-disable-next-line no-control-regex
const UNSAFE_EXCEPT_LAYOUT = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/g

/** A string made safe to show; keepLayout keeps line feeds and tabs (multi-line blocks such as a JSON <pre>). */
export function displayText (s, keepLayout = false) {
  return String(s).replace(keepLayout ? UNSAFE_EXCEPT_LAYOUT : UNSAFE_DISPLAY_CHAR, c => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

export const PROVENANCE_PREDICATE = 'https://slsa.dev/provenance/v1'
export const FAILURE_PREDICATE = 'https://quorate.dev/attestation/build-failure/v2'
export const FAILURE_PREDICATE_V1 = 'https://quorate.dev/attestation/build-failure/v1'
export const REF_OBSERVATION_PREDICATE = 'https://quorate.dev/attestation/ref-observation/v2'
export const REF_OBSERVATION_PREDICATE_V1 = 'https://quorate.dev/attestation/ref-observation/v1'

/**
 * Parses location.hash into a view. Only three shapes exist; anything else, or a parameter
 * that is not a valid repository id or full commit id, is an 'invalid' view (never fetched).
 */
export function parseRoute (hash) {
  const h = typeof hash === 'string' ? hash.replace(/^#/, '') : ''
  if (h === '' || h === '/') return { view: 'home' }
  const parts = h.split('/')
  if (parts[0] !== '' || parts[1] !== 'repo') return { view: 'invalid', reason: 'unknown page' }
  let repoId
  try { repoId = decodeURIComponent(parts[2] ?? '') } catch { return { view: 'invalid', reason: 'badly encoded repository id' } }
  if (!REPO_ID.test(repoId)) return { view: 'invalid', reason: 'not a valid repository id' }
  if (parts.length === 3) return { view: 'repo', repoId }
  if (parts.length === 5 && parts[3] === 'commit') {
    const commit = parts[4]
    if (!COMMIT_SHA.test(commit)) return { view: 'invalid', reason: 'not a full lowercase hex commit id' }
    return { view: 'commit', repoId, commit }
  }
  return { view: 'invalid', reason: 'unknown page' }
}

export function repoHref (repoId) { return `#/repo/${encodeURIComponent(repoId)}` }
export function commitHref (repoId, commit) { return `#/repo/${encodeURIComponent(repoId)}/commit/${commit}` }

/** First n characters of a hex digest followed by an ellipsis; '' for anything that is not a string. */
export function shortHex (s, n = 12) {
  if (typeof s !== 'string') return ''
  return s.length > n ? `${s.slice(0, n)}…` : s
}

// ---- SHA-256 (FIPS 180-4). Small and synchronous: crypto.subtle is missing on plain-http
// origins other than localhost, and a node's dashboard is often opened on a LAN address.
const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
])

/** Lowercase hex SHA-256 of bytes (Uint8Array) or of a string's UTF-8 encoding. */
export function sha256Hex (input) {
  const data = typeof input === 'string' ? new TextEncoder().encode(input) : input
  const bitLen = data.length * 8
  const padded = new Uint8Array(((data.length + 9 + 63) >> 6) << 6)
  padded.set(data)
  padded[data.length] = 0x80
  const view = new DataView(padded.buffer)
  view.setUint32(padded.length - 8, Math.floor(bitLen / 0x100000000))
  view.setUint32(padded.length - 4, bitLen >>> 0)
  const H = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19])
  const W = new Uint32Array(64)
  const rotr = (x, n) => (x >>> n) | (x << (32 - n))
  for (let off = 0; off < padded.length; off += 64) {
    for (let i = 0; i < 16; i++) W[i] = view.getUint32(off + i * 4)
    for (let i = 16; i < 64; i++) {
      const s0 = rotr(W[i - 15], 7) ^ rotr(W[i - 15], 18) ^ (W[i - 15] >>> 3)
      const s1 = rotr(W[i - 2], 17) ^ rotr(W[i - 2], 19) ^ (W[i - 2] >>> 10)
      W[i] = (W[i - 16] + s0 + W[i - 7] + s1) >>> 0
    }
    let [a, b, c, d, e, f, g, h] = H
    for (let i = 0; i < 64; i++) {
      const S1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)
      const ch = (e & f) ^ (~e & g)
      const t1 = (h + S1 + ch + K[i] + W[i]) >>> 0
      const S0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)
      const maj = (a & b) ^ (a & c) ^ (b & c)
      const t2 = (S0 + maj) >>> 0
      h = g; g = f; f = e; e = (d + t1) >>> 0; d = c; c = b; b = a; a = (t1 + t2) >>> 0
    }
    H[0] += a; H[1] += b; H[2] += c; H[3] += d; H[4] += e; H[5] += f; H[6] += g; H[7] += h
  }
  return Array.from(H, x => x.toString(16).padStart(8, '0')).join('')
}

/** keyid of an Ed25519 public key (DESIGN.md): SHA-256 of the RFC 8785 JSON of the TUF key object. */
export function keyidOf (publicKeyHex) {
  // Canonical JSON of {"keytype","keyval":{"public"},"scheme"}: keys already in sorted order,
  // and a 64-hex string needs no escaping.
  return sha256Hex(`{"keytype":"ed25519","keyval":{"public":${JSON.stringify(publicKeyHex)}},"scheme":"ed25519"}`)
}

/** Strict standard base64 to bytes; throws on anything else. */
export function base64ToBytes (s) {
  if (typeof s !== 'string' || s.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(s)) throw new Error('payload is not standard base64')
  const bin = atob(s)
  const out = new Uint8Array(bin.length)
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i)
  return out
}

/** DSSE pre-authentication encoding: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body. */
export function preAuthEncoding (payloadType, body) {
  const typeBytes = new TextEncoder().encode(payloadType)
  const head = new TextEncoder().encode(`DSSEv1 ${typeBytes.length} ${payloadType} ${body.length} `)
  const out = new Uint8Array(head.length + body.length)
  out.set(head)
  out.set(body, head.length)
  return out
}

/**
 * Decodes a DSSE envelope as served by the node. Returns its id (SHA-256 of the PAE bytes, the
 * id decisions refer to), the signer's keyid hint and the statement, or an error text.
 * This does not verify the signature: the node's decision already did, and `quorate verify`
 * is what a deploy gate runs; the page only explains.
 */
export function decodeEnvelope (env) {
  if (env === null || typeof env !== 'object' || typeof env.payloadType !== 'string' || typeof env.payload !== 'string') {
    return { ok: false, error: 'not a DSSE envelope' }
  }
  const keyid = Array.isArray(env.signatures) && env.signatures.length > 0 && typeof env.signatures[0]?.keyid === 'string' ? env.signatures[0].keyid : ''
  let body
  try { body = base64ToBytes(env.payload) } catch (err) { return { ok: false, keyid, error: err.message } }
  const id = sha256Hex(preAuthEncoding(env.payloadType, body))
  let statement
  try {
    statement = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body))
  } catch {
    return { ok: false, id, keyid, error: 'payload is not UTF-8 JSON' }
  }
  if (statement === null || typeof statement !== 'object' || Array.isArray(statement)) return { ok: false, id, keyid, error: 'payload is not a JSON object' }
  return { ok: true, id, keyid, statement, info: describeStatement(statement) }
}

const isObj = (x) => x !== null && typeof x === 'object' && !Array.isArray(x)
const str = (x) => typeof x === 'string' ? x : undefined

const logDigest = (x) => typeof x === 'string' && SHA256_HEX.test(x) ? x : undefined

/** Where this node serves a build log by its signed digest (its own, or a peer's whole log). */
export function logHref (sha256) {
  return SHA256_HEX.test(sha256 ?? '') ? `/v1/logs/${sha256}` : undefined
}

/** The fields the page shows from a statement of any of our three predicate types. */
export function describeStatement (st) {
  const p = isObj(st.predicate) ? st.predicate : {}
  const subjects = Array.isArray(st.subject) ? st.subject.filter(isObj) : []
  if (st.predicateType === PROVENANCE_PREDICATE) {
    const bd = isObj(p.buildDefinition) ? p.buildDefinition : {}
    const rd = isObj(p.runDetails) ? p.runDetails : {}
    const md = isObj(rd.metadata) ? rd.metadata : {}
    const log = isObj(md.quorate_log) ? md.quorate_log : {}
    const byproducts = Array.isArray(rd.byproducts) ? rd.byproducts.filter(isObj) : []
    const fileList = byproducts.find(b => b.name === 'file-list')
    const buildLog = byproducts.find(b => b.name === 'build-log')
    return {
      kind: 'build',
      logSha256: logDigest(isObj(buildLog?.digest) ? buildLog.digest.sha256 : undefined),
      builderId: str(isObj(rd.builder) ? rd.builder.id : undefined) ?? '',
      narSha256: str(isObj(subjects[0]?.digest) ? subjects[0].digest.narSha256 : undefined) ?? '',
      fileListSha256: str(isObj(fileList?.digest) ? fileList.digest.sha256 : undefined) ?? '',
      fingerprint: isObj(bd.internalParameters) ? bd.internalParameters : {},
      seq: typeof log.seq === 'number' ? log.seq : null,
      startedOn: str(md.startedOn) ?? '',
      finishedOn: str(md.finishedOn) ?? '',
      subjects
    }
  }
  if (st.predicateType === FAILURE_PREDICATE || st.predicateType === FAILURE_PREDICATE_V1) {
    const log = isObj(p.quorate_log) ? p.quorate_log : {}
    return {
      kind: 'failure',
      logSha256: logDigest(p.logSha256),
      builderId: str(isObj(p.builder) ? p.builder.id : undefined) ?? '',
      reason: str(p.reason) ?? '',
      exitStatus: typeof p.exitStatus === 'number' ? p.exitStatus : null,
      fingerprint: isObj(p.environment) ? p.environment : {},
      seq: typeof log.seq === 'number' ? log.seq : null,
      finishedOn: str(p.finishedOn) ?? '',
      attempt: typeof p.attempt === 'number' ? p.attempt : 1,
      final: p.final === true,
      subjects
    }
  }
  if (st.predicateType === REF_OBSERVATION_PREDICATE || st.predicateType === REF_OBSERVATION_PREDICATE_V1) {
    const log = isObj(p.quorate_log) ? p.quorate_log : {}
    return { kind: 'ref', builderId: str(isObj(p.builder) ? p.builder.id : undefined) ?? '', ref: str(p.ref) ?? '', seq: typeof log.seq === 'number' ? log.seq : null, fingerprint: {}, subjects }
  }
  return { kind: 'unknown', builderId: '', fingerprint: {}, seq: null, subjects, predicateType: str(st.predicateType) ?? '' }
}

/** Flattens a fingerprint object to dotted keys with string values (long values cut). */
export function flattenFingerprint (obj, prefix = '', out = new Map(), depth = 0) {
  if (!isObj(obj)) return out
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix === '' ? k : `${prefix}.${k}`
    if (isObj(v) && depth < 4) flattenFingerprint(v, key, out, depth + 1)
    else {
      const text = typeof v === 'string' ? v : JSON.stringify(v) ?? String(v)
      out.set(key, text.length > 500 ? `${text.slice(0, 500)}…` : text)
    }
  }
  return out
}

/**
 * Compares environment fingerprints across builders: one row per field, with each builder's
 * value ('' when absent) and whether they differ.
 */
export function compareFingerprints (entries) {
  const flat = entries.map(e => ({ builder: e.builder, values: flattenFingerprint(e.fingerprint) }))
  const keys = [...new Set(flat.flatMap(f => [...f.values.keys()]))].sort()
  const fields = keys.map(key => {
    const values = flat.map(f => f.values.get(key) ?? '')
    return { key, values, differs: new Set(values).size > 1 }
  })
  return { builders: flat.map(f => f.builder), fields, differing: fields.filter(f => f.differs).length }
}

/** Validates a file list blob ({version: 1, files: [...]}) and returns its entries, or throws. */
export function parseFileList (bytes) {
  let doc
  try { doc = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes)) } catch { throw new Error('file list is not UTF-8 JSON') }
  if (!isObj(doc) || doc.version !== 1 || !Array.isArray(doc.files)) throw new Error('file list is not {"version": 1, "files": [...]}')
  return doc.files.filter(f => isObj(f) && typeof f.path === 'string' && ['file', 'symlink', 'dir'].includes(f.type)).map(f => ({
    path: f.path,
    type: f.type,
    ...(typeof f.size === 'number' ? { size: f.size } : {}),
    ...(typeof f.sha256 === 'string' ? { sha256: f.sha256 } : {}),
    ...(f.executable === true ? { executable: true } : {}),
    ...(typeof f.target === 'string' ? { target: f.target } : {})
  }))
}

/**
 * The top-level files named in a result's signed subjects (subject[0] is the commit itself;
 * OCI image manifest subjects carry a mediaType and name an image, not a file, so they are
 * skipped): the fallback when this node does not hold the result's file list. Sizes are not
 * signed there.
 */
export function filesFromSubjects (subjects) {
  if (!Array.isArray(subjects)) return []
  return subjects.slice(1).filter(s => isObj(s) && typeof s.name === 'string' && isObj(s.digest) && typeof s.digest.sha256 === 'string' && s.mediaType === undefined)
    .map(s => ({ path: s.name, type: 'file', sha256: s.digest.sha256 }))
}

/**
 * Only the top-level regular files of a full list: comparable with a subjects-only list (sizes
 * are kept for display; diffFiles compares sizes only when both sides have them).
 */
export function topLevelFiles (files) {
  return files.filter(f => f.type === 'file' && !f.path.includes('/')).map(f => ({ path: f.path, type: 'file', sha256: f.sha256, ...(f.size !== undefined ? { size: f.size } : {}) }))
}

/**
 * File-level difference from `base` to `other` (arrays of entries): added (only in other),
 * removed (only in base), changed (same path, different type, content, executable bit or
 * target). Sorted by path. The same rules as core's diffFileLists.
 */
export function diffFiles (base, other) {
  const a = new Map(base.map(f => [f.path, f]))
  const b = new Map(other.map(f => [f.path, f]))
  const out = []
  for (const path of [...new Set([...a.keys(), ...b.keys()])].sort()) {
    const x = a.get(path)
    const y = b.get(path)
    if (x === undefined) { out.push({ change: 'added', path, other: y, differs: [] }); continue }
    if (y === undefined) { out.push({ change: 'removed', path, base: x, differs: [] }); continue }
    const differs = []
    if (x.type !== y.type) differs.push('type')
    else {
      if (x.sha256 !== y.sha256 || (x.size !== undefined && y.size !== undefined && x.size !== y.size)) differs.push('content')
      if ((x.executable === true) !== (y.executable === true)) differs.push('executable')
      if (x.target !== y.target) differs.push('target')
    }
    if (differs.length > 0) out.push({ change: 'changed', path, base: x, other: y, differs })
  }
  return out
}

/** Human size: 1234 → "1.2 kB"; '' when unknown. */
export function formatSize (n) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return ''
  if (n < 1000) return `${n} B`
  const units = ['kB', 'MB', 'GB', 'TB']
  let v = n
  let u = -1
  while (v >= 1000 && u < units.length - 1) { v /= 1000; u++ }
  return `${v.toFixed(1)} ${units[u]}`
}

export const STATUS_TEXT = { trusted: 'TRUSTED', disputed: 'DISPUTED', pending: 'PENDING', failed: 'FAILED' }
export const RESULT_TEXT = { agrees: 'agrees', dissents: 'dissents', voted: 'voted', failed: 'failed', equivocated: 'equivocated', none: 'not heard' }

/** A known status word, or 'pending' for anything unexpected (never used as a class name raw). */
export function statusOf (s) { return Object.hasOwn(STATUS_TEXT, s) ? s : 'pending' }
export function resultOf (r) { return Object.hasOwn(RESULT_TEXT, r) && r !== 'none' ? r : 'none' }

const cellsOf = (entry) => Array.isArray(entry?.builders) ? entry.builders.filter(isObj) : []

/**
 * Whether builders disagree on a commit that is not trusted: two or more different results
 * were signed by counted builders (a tie, or a fast dissenter before the quorum is in).
 * Reads the node's flag when it sends one, else the builder cells of a commit list entry.
 */
export function hasDisagreement (entry) {
  if (!isObj(entry) || statusOf(entry.status) === 'trusted') return false
  if (typeof entry.disagreement === 'boolean') return entry.disagreement
  const digests = new Set(cellsOf(entry).filter(c => ['voted', 'agrees', 'dissents'].includes(c.result) && typeof c.narSha256 === 'string').map(c => c.narSha256))
  return digests.size >= 2
}

/**
 * A decision's summary without the digest the row already shows in its own column
 * ("trusted: <narSha256> by 2 of 3 …" → "by 2 of 3 …").
 */
export function summaryText (summary, digest) {
  if (typeof summary !== 'string') return ''
  let s = summary
  if (typeof digest === 'string' && digest !== '') s = s.split(digest).join('')
  return s.replace(/^trusted:\s*/, '').replace(/\s{2,}/g, ' ').replace(/\s+([,;)])/g, '$1').trim()
}

const rate = (num, den) => den === 0 ? null : num / den

/**
 * What a builder's newest signed failure says about what happens next: "attempt 2, final" (it
 * will not retry: only an administrator's rebuild reopens it) or "attempt 1, will retry".
 */
export function failureState (f) {
  const attempt = typeof f?.attempt === 'number' && Number.isInteger(f.attempt) && f.attempt > 0 ? f.attempt : 1
  return `attempt ${attempt}, ${f?.final === true ? 'final' : 'will retry'}`
}

/** "83% (5 of 6)", or "—" when nothing is final yet. */
export function formatRate (r, num, den) { return r === null ? '—' : `${Math.round(r * 100)}% (${num} of ${den})` }

/**
 * Reproducibility over the newest `n` commits of a commit list (newest first):
 * per repository, trusted among the commits with a final answer (trusted, disputed, failed);
 * per builder, how often it built the trusted result among the trusted commits it answered.
 */
export function reproducibility (commits, n = 50) {
  const recent = (Array.isArray(commits) ? commits : []).slice(0, n)
  const repo = { commits: recent.length, trusted: 0, disputed: 0, failed: 0, pending: 0, rate: null }
  const builders = new Map()
  const b = (name, org) => {
    let x = builders.get(name)
    if (x === undefined) builders.set(name, x = { builder: name, org: typeof org === 'string' ? org : '', agrees: 0, dissents: 0, failed: 0, equivocated: 0, answered: 0, rate: null })
    return x
  }
  for (const c of recent) {
    const st = statusOf(c?.status)
    repo[st]++
    for (const cell of cellsOf(c)) {
      if (typeof cell.builder !== 'string') continue
      const x = b(cell.builder, cell.org)
      if (cell.result === 'equivocated') { x.equivocated++; continue }
      if (st !== 'trusted') continue
      if (cell.result === 'agrees') { x.agrees++; x.answered++ } else if (cell.result === 'dissents') { x.dissents++; x.answered++ } else if (cell.result === 'failed') { x.failed++; x.answered++ }
    }
  }
  repo.rate = rate(repo.trusted, repo.trusted + repo.disputed + repo.failed)
  for (const x of builders.values()) x.rate = rate(x.agrees, x.answered)
  return { repo, builders: [...builders.values()].sort((p, q) => p.builder < q.builder ? -1 : p.builder > q.builder ? 1 : 0) }
}

/**
 * Several results' file lists side by side, with no result as the reference (none is trusted):
 * one row per path that is not the same in all of them, with each result's entry (or undefined).
 */
export function sideBySide (lists) {
  const maps = lists.map(files => new Map(files.map(f => [f.path, f])))
  const same = (x, y) => x !== undefined && y !== undefined && x.type === y.type && x.sha256 === y.sha256 && (x.executable === true) === (y.executable === true) && x.target === y.target &&
    (x.size === undefined || y.size === undefined || x.size === y.size)
  const rows = []
  for (const path of [...new Set(maps.flatMap(m => [...m.keys()]))].sort()) {
    const entries = maps.map(m => m.get(path))
    if (entries.every(e => same(e, entries[0]))) continue
    rows.push({ path, entries })
  }
  return rows
}

/**
 * What the commit's git metadata says, when the node sends it (from its own mirror: not signed
 * by anyone). Accepts `{subject, author, date}` as strings; anything else gives undefined.
 */
export function gitInfo (x) {
  if (!isObj(x)) return undefined
  const out = {}
  for (const k of ['subject', 'author', 'date']) if (typeof x[k] === 'string' && x[k] !== '') out[k] = x[k].length > 300 ? `${x[k].slice(0, 300)}…` : x[k]
  return Object.keys(out).length > 0 ? out : undefined
}

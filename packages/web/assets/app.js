// Quorate auditor dashboard: plain browser ES module, no framework, no build step.
//
// Security model: the page runs under `script-src 'self'; style-src 'self'`. Every string that
// came from the node or from a signer (builder names, file paths, fingerprint values, failure
// reasons, ids) is inserted as a text node by h() below; nothing here parses HTML
// (no innerHTML, insertAdjacentHTML, document.write, eval), and control and bidi characters
// (U+202E, U+009B …) become visible \uXXXX escapes there, in text and attribute values alike. Links are only the hash routes that
// model.js builds from validated ids. Route parameters are validated before any fetch.
import * as M from './model.js'

const $app = document.getElementById('app')
const $live = document.getElementById('live')
const $activity = document.getElementById('activity')
const $nodeInfo = document.getElementById('node-info')
const $crumbs = document.getElementById('crumbs')

const ATTRS = new Set(['id', 'title', 'scope', 'role', 'colspan', 'rowspan', 'open', 'lang', 'tabindex'])

/** Creates an element; children that are not Nodes become text nodes (never parsed as markup). */
function h (tag, props, ...children) {
  const el = document.createElement(tag)
  for (const [k, v] of Object.entries(props ?? {})) {
    if (v === undefined || v === null || v === false) continue
    if (k === 'class') el.className = Array.isArray(v) ? v.filter(Boolean).join(' ') : v
    else if (k === 'href') {
      // In-page hash links, and this node's build logs by digest (plain text, served with a sandbox CSP).
      if (typeof v !== 'string' || !(v.startsWith('#/') || /^\/v1\/logs\/[0-9a-f]{64}$/.test(v))) throw new Error('h: only in-page hash links and build-log links')
      el.setAttribute('href', v)
    } else if (k.startsWith('data-') || k.startsWith('aria-') || ATTRS.has(k)) el.setAttribute(k, v === true ? '' : M.displayText(v))
    else throw new Error(`h: attribute ${k} is not allowed`)
  }
  appendAll(el, children)
  return el
}

function appendAll (el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue
    // Text nodes only, with control and bidi characters made visible (model.js displayText).
    el.append(c instanceof Node ? c : document.createTextNode(M.displayText(c, true)))
  }
}

const code = (s, title) => h('code', { title }, s)
const digest = (s, n = 16) => typeof s === 'string' && s !== '' ? h('code', { class: 'digest', title: s }, M.shortHex(s, n)) : h('span', { class: 'muted' }, '—')
const statusBadge = (s) => {
  const st = M.statusOf(s)
  return h('span', { class: ['status', `status-${st}`], 'data-testid': 'status', 'data-status': st }, M.STATUS_TEXT[st])
}
/** PENDING with builders disagreeing so far: said in words beside the badge, never by colour alone. */
const disagreementBadge = () => h('span', { class: 'status status-disagree', 'data-testid': 'disagreement', title: 'two or more different results were signed; none is trusted yet' }, 'builders disagree')
const unsignedMark = () => h('span', { class: 'unsigned', title: 'read from this node\'s git mirror; no builder signed it' }, 'unsigned')
const resultBadge = (r) => {
  const res = M.resultOf(r)
  return h('span', { class: ['result', `cell-${res}`], 'data-result': res }, M.RESULT_TEXT[res])
}
const section = (id, title, ...children) => h('section', { id, 'data-testid': id, class: 'card' }, h('h2', null, title), ...children)
const note = (...children) => h('p', { class: 'note' }, ...children)
const orgList = (orgs) => Array.isArray(orgs) && orgs.length > 0 ? orgs.join(', ') : '—'
const when = (iso) => typeof iso === 'string' && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d/.test(iso) ? `${iso.slice(0, 10)} ${iso.slice(11, 19)} UTC` : ''
function table (caption, headers, rows, props = {}) {
  // A table that stacks at phone width labels each cell with its column header (style.css shows it).
  if (typeof props.class === 'string' && props.class.split(' ').includes('stack')) {
    for (const tr of rows) [...tr.children].forEach((cell, i) => { if (typeof headers[i] === 'string') cell.setAttribute('data-label', headers[i]) })
  }
  return h('div', { class: 'table-wrap' }, h('table', props,
    caption === null ? null : h('caption', null, caption),
    h('thead', null, h('tr', null, headers.map(x => h('th', { scope: 'col' }, x)))),
    h('tbody', null, rows)))
}

// ---- data -------------------------------------------------------------------------------

class HttpFailure extends Error {}

async function getJson (path) {
  const res = await fetch(path, { headers: { accept: 'application/json' }, cache: 'no-store' })
  let body
  try { body = await res.json() } catch { body = undefined }
  if (!res.ok) throw new HttpFailure(`${path}: HTTP ${res.status}${typeof body?.error === 'string' ? `: ${body.error}` : ''}`)
  return body
}

const state = {
  policy: null, // { digest, document, builders: [{name, org}], keyToBuilder: Map }
  route: { view: 'home' },
  generation: 0,
  rendering: false,
  dirty: false,
  seenCommits: new Map() // repoId -> Set of commits shown before (to mark new ones)
}

async function loadPolicy () {
  const r = await getJson('/v1/policy')
  const doc = r?.policy ?? {}
  const builders = []
  const keyToBuilder = new Map()
  for (const b of Array.isArray(doc.builders) ? doc.builders : []) {
    if (typeof b?.name !== 'string' || typeof b?.org !== 'string') continue
    builders.push({ name: b.name, org: b.org, endpoint: typeof b.endpoint === 'string' ? b.endpoint : '' })
    for (const k of Array.isArray(b.keys) ? b.keys : []) {
      if (typeof k?.publicKey === 'string') keyToBuilder.set(M.keyidOf(k.publicKey), { name: b.name, org: b.org, revoked: k.revoked === true })
    }
  }
  builders.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
  state.policy = { digest: typeof r?.digest === 'string' ? r.digest : '', document: doc, builders, keyToBuilder }
}

const fileListCache = new Map()

/**
 * A result's file list from this node's blob store, checked against the signed digest.
 * Returns { files } or { error } (this node may not hold another builder's list).
 */
async function loadFileList (sha) {
  if (!M.SHA256_HEX.test(sha ?? '')) return { error: 'no file list digest in the result' }
  const cached = fileListCache.get(sha)
  if (cached !== undefined) return cached
  let res
  try {
    res = await fetch(`/v1/blobs/${sha}`, { cache: 'no-store' })
  } catch (err) {
    return { error: `could not fetch: ${err.message}` }
  }
  if (res.status === 404) return { error: 'this node does not hold this file list' }
  if (!res.ok) return { error: `HTTP ${res.status}` }
  const bytes = new Uint8Array(await res.arrayBuffer())
  if (M.sha256Hex(bytes) !== sha) return { error: 'the node served a file list that does not match the signed digest; ignored' }
  let out
  try { out = { files: M.parseFileList(bytes) } } catch (err) { out = { error: err.message } }
  fileListCache.set(sha, out)
  return out
}

// ---- routing and refresh ------------------------------------------------------------------

function crumbs (route) {
  const items = [h('a', { href: '#/' }, 'Repositories')]
  if (route.view === 'repo' || route.view === 'commit') items.push(h('a', { href: M.repoHref(route.repoId) }, route.repoId))
  if (route.view === 'commit') items.push(h('span', { 'aria-current': 'page' }, M.shortHex(route.commit, 12)))
  const out = []
  items.forEach((x, i) => { if (i > 0) out.push(h('span', { class: 'sep', 'aria-hidden': 'true' }, '›')); out.push(x) })
  $crumbs.replaceChildren(...out)
}

async function render () {
  if (state.rendering) { state.dirty = true; return }
  state.rendering = true
  const gen = ++state.generation
  const route = M.parseRoute(location.hash)
  state.route = route
  crumbs(route)
  try {
    if (state.policy === null) await loadPolicy()
    let view
    if (route.view === 'home') view = await viewHome()
    else if (route.view === 'repo') view = await viewRepo(route.repoId)
    else if (route.view === 'commit') view = await viewCommit(route.repoId, route.commit)
    else view = [h('div', { class: 'error', role: 'alert', 'data-testid': 'error' }, `This address is not a page of the dashboard (${route.reason}). `, h('a', { href: '#/' }, 'Go to the repositories.'))]
    if (gen === state.generation) swapContent(view)
  } catch (err) {
    if (gen === state.generation) swapContent([h('div', { class: 'error', role: 'alert', 'data-testid': 'error' }, `Could not load this page: ${err.message}`)])
  } finally {
    state.rendering = false
    if (state.dirty) { state.dirty = false; void render() }
  }
}

/** Replaces the page content, keeping which <details> were open (live refreshes must not fold them). */
function swapContent (nodes) {
  const open = new Set([...$app.querySelectorAll('details[data-key]')].filter(d => d.open).map(d => d.dataset.key))
  const closed = new Set([...$app.querySelectorAll('details[data-key]')].filter(d => !d.open).map(d => d.dataset.key))
  const frag = document.createDocumentFragment()
  appendAll(frag, nodes)
  for (const d of frag.querySelectorAll('details[data-key]')) {
    if (open.has(d.dataset.key)) d.open = true
    else if (closed.has(d.dataset.key)) d.open = false
  }
  $app.replaceChildren(frag)
}

// Throttled, not debounced: a burst of events (a busy network) gives one refresh per delay
// instead of postponing it for as long as the burst lasts.
let refreshTimer
function scheduleRefresh (delayMs = 400) {
  if (refreshTimer !== undefined) return
  refreshTimer = setTimeout(() => { refreshTimer = undefined; void render() }, delayMs)
}

window.addEventListener('hashchange', () => { window.scrollTo(0, 0); void render() })

// ---- views --------------------------------------------------------------------------------

async function viewHome () {
  document.title = 'Quorate auditor'
  const r = await getJson('/v1/repos')
  const repos = (Array.isArray(r?.repositories) ? r.repositories : []).filter(x => typeof x?.id === 'string' && M.REPO_ID.test(x.id))
  const rows = await Promise.all(repos.map(async repo => {
    let commits = []
    try { commits = (await getJson(`/v1/repos/${encodeURIComponent(repo.id)}/commits`))?.commits ?? [] } catch { /* shown as no commits */ }
    const latest = commits[0]
    const counts = { trusted: 0, disputed: 0, pending: 0, failed: 0 }
    for (const c of commits) counts[M.statusOf(c?.status)]++
    return h('tr', { 'data-testid': 'repo-row', 'data-repo': repo.id },
      h('th', { scope: 'row' }, h('a', { href: M.repoHref(repo.id) }, repo.id)),
      h('td', null, Array.isArray(repo.branches) ? repo.branches.join(', ') : ''),
      h('td', null, String(commits.length)),
      h('td', { class: 'counts' },
        h('span', { class: 'count count-trusted' }, `${counts.trusted} trusted`), ' ',
        h('span', { class: 'count count-disputed' }, `${counts.disputed} disputed`), ' ',
        h('span', { class: 'count count-pending' }, `${counts.pending} pending`), ' ',
        h('span', { class: 'count count-failed' }, `${counts.failed} failed`)),
      h('td', null, latest !== undefined && M.COMMIT_SHA.test(latest.commit ?? '')
        ? [h('a', { href: M.commitHref(repo.id, latest.commit) }, code(M.shortHex(latest.commit, 12), latest.commit)), ' ', statusBadge(latest.status), M.hasDisagreement(latest) ? [' ', disagreementBadge()] : null]
        : h('span', { class: 'muted' }, 'no commits yet')))
  }))
  const p = state.policy
  const quorum = p.document?.quorum ?? {}
  const orgs = [...new Set(p.builders.map(b => b.org))]
  return [
    section('repositories', 'Repositories',
      rows.length === 0 ? note('This node\'s policy lists no repositories.') : table(null, ['Repository', 'Branches', 'Commits', 'Decisions', 'Latest commit'], rows, { 'data-testid': 'repo-table', class: 'stack' })),
    section('policy', 'Network policy',
      h('dl', { class: 'facts' },
        h('dt', null, 'Quorum'), h('dd', { 'data-testid': 'policy-quorum' }, typeof quorum.threshold === 'number'
          ? `${quorum.threshold} of ${orgs.length} organizations (${quorum.mode ?? 'majority'})`
          : `${Math.floor(orgs.length / 2) + 1} of ${orgs.length} organizations (${quorum.mode ?? 'majority'}; the default threshold, more than half)`),
        h('dt', null, 'Policy digest'), h('dd', null, code(p.digest))),
      table('Builders in the policy', ['Builder', 'Organization', 'Endpoint'], p.builders.map(b =>
        h('tr', { 'data-testid': 'policy-builder', 'data-builder': b.name }, h('th', { scope: 'row' }, b.name), h('td', null, b.org), h('td', null, b.endpoint === '' ? '—' : code(b.endpoint))))))
  ]
}

async function viewRepo (repoId) {
  document.title = `${repoId} · Quorate auditor`
  const r = await getJson(`/v1/repos/${encodeURIComponent(repoId)}/commits`)
  const commits = (Array.isArray(r?.commits) ? r.commits : []).filter(c => M.COMMIT_SHA.test(c?.commit ?? ''))
  // the node orders them by git topology (a child before its parent), never by first-seen time
  const claims = (Array.isArray(r?.unverifiedClaims) ? r.unverifiedClaims : []).filter(c => M.COMMIT_SHA.test(c?.commit ?? ''))
  const seen = state.seenCommits.get(repoId)
  state.seenCommits.set(repoId, new Set(commits.map(c => c.commit)))
  const isNew = (c) => seen !== undefined && !seen.has(c)
  const counts = { trusted: 0, disputed: 0, pending: 0, failed: 0 }
  for (const c of commits) counts[M.statusOf(c.status)]++
  const withGit = commits.some(c => M.gitInfo(c.git) !== undefined)

  const timeline = commits.map(c => h('tr', { class: ['commit-row', `row-${M.statusOf(c.status)}`, isNew(c.commit) && 'row-new'], 'data-testid': 'commit-row', 'data-commit': c.commit, 'data-status': M.statusOf(c.status), 'data-new': isNew(c.commit) ? 'true' : null },
    h('th', { scope: 'row' }, h('a', { href: M.commitHref(repoId, c.commit), title: c.commit }, code(M.shortHex(c.commit, 12)))),
    withGit ? h('td', { class: 'git-subject', 'data-testid': 'commit-subject' }, M.gitInfo(c.git)?.subject ?? '') : null,
    h('td', { class: 'when' }, when(c.firstSeen)),
    h('td', null, statusBadge(c.status), M.hasDisagreement(c) ? [' ', disagreementBadge()] : null),
    h('td', { 'data-testid': 'commit-digest' }, digest(c.narSha256)),
    h('td', null, orgList(c.supportingOrgs)),
    h('td', { class: 'summary', 'data-testid': 'commit-row-summary' }, M.summaryText(c.summary, c.narSha256))))

  // Builder × commit matrix: the policy's builders, plus any a node reports that the policy
  // page did not list (a newer policy on the node).
  const shown = commits.slice(0, 40)
  const equivocatorClaims = await loadEquivocatorClaims(repoId, shown)
  const stats = M.reproducibility(commits, RATE_WINDOW)
  const names = new Map(state.policy.builders.map(b => [b.name, b.org]))
  for (const c of shown) for (const cell of Array.isArray(c.builders) ? c.builders : []) if (typeof cell?.builder === 'string' && !names.has(cell.builder)) names.set(cell.builder, typeof cell.org === 'string' ? cell.org : '')
  const matrixRows = [...names].map(([name, org]) => h('tr', { 'data-testid': 'matrix-row', 'data-builder': name },
    h('th', { scope: 'row' }, name, h('span', { class: 'org' }, org)),
    shown.map(c => {
      const cell = (Array.isArray(c.builders) ? c.builders : []).find(x => x?.builder === name)
      const res = M.resultOf(cell?.result)
      // An equivocator's claim on this commit: shown, marked not counted (from the commit's envelopes).
      const claim = res === 'equivocated' ? equivocatorClaims.get(c.commit)?.get(name) : undefined
      const shownDigest = typeof cell?.narSha256 === 'string' ? cell.narSha256 : claim?.narSha256
      const label = `${name} on ${M.shortHex(c.commit, 12)}: ${M.RESULT_TEXT[res]}${typeof shownDigest === 'string' ? ` (narSha256 ${shownDigest})` : ''}${res === 'equivocated' ? ', not counted' : ''}`
      return h('td', { class: ['cell', `cell-${res}`], 'data-testid': 'matrix-cell', 'data-builder': name, 'data-commit': c.commit, 'data-result': res, title: label },
        h('a', { href: M.commitHref(repoId, c.commit), 'aria-label': label }, M.RESULT_TEXT[res]),
        res === 'dissents' || res === 'voted' || (res === 'equivocated' && typeof shownDigest === 'string') ? h('span', { class: 'cell-digest', 'data-testid': 'cell-digest' }, M.shortHex(shownDigest, 8)) : null,
        res === 'equivocated' ? h('span', { class: 'cell-note' }, claim?.kind === 'failure' ? 'failed, not counted' : 'not counted') : null)
    })))
  const matrixHead = h('tr', null, h('th', { scope: 'col' }, 'Builder'), shown.map(c =>
    h('th', { scope: 'col', class: ['matrix-commit', `col-${M.statusOf(c.status)}`], title: `${c.commit}: ${M.STATUS_TEXT[M.statusOf(c.status)]}` },
      h('a', { href: M.commitHref(repoId, c.commit) }, M.shortHex(c.commit, 7).replace('…', '')),
      h('span', { class: ['mini', `status-${M.statusOf(c.status)}`] }, M.STATUS_TEXT[M.statusOf(c.status)]))))

  return [
    h('h1', null, 'Repository ', h('span', { class: 'mono' }, repoId)),
    h('p', { class: 'counts', 'data-testid': 'repo-counts' },
      `${commits.length} commit${commits.length === 1 ? '' : 's'}: `,
      h('span', { class: 'count count-trusted' }, `${counts.trusted} trusted`), ' · ',
      h('span', { class: 'count count-disputed' }, `${counts.disputed} disputed`), ' · ',
      h('span', { class: 'count count-pending' }, `${counts.pending} pending`), ' · ',
      h('span', { class: 'count count-failed' }, `${counts.failed} failed`)),
    reproducibilitySection(stats),
    section('timeline', 'Commit timeline',
      commits.length === 0
        ? note('No commit seen yet. Builders notice new commits when they poll the repository; this page updates by itself.')
        : [
            withGit ? note('Commit subjects come from this node\'s git mirror and are ', unsignedMark(), ': no builder signed them.') : null,
            table('Commits, newest first, with the quorum decision of each', ['Commit', ...(withGit ? ['Subject (unsigned)'] : []), 'First seen', 'Status', 'Trusted digest (narSha256)', 'Agreeing organizations', 'Decision'], timeline, { 'data-testid': 'timeline-table', class: 'timeline stack' })
          ]),
    claims.length === 0
      ? null
      : section('unverified', 'Unverified claims',
        note('Commits some builders say they saw on a ref, but that neither threshold organizations nor this node\'s own git mirror have seen: not listed above, not built for that reason alone, possibly invented.'),
        table('Unverified claims, newest first', ['Commit', 'Claimed by', 'Refs'], claims.map(c => h('tr', { 'data-testid': 'unverified-claim', 'data-commit': c.commit },
          h('th', { scope: 'row' }, code(M.shortHex(c.commit, 12))),
          h('td', null, (Array.isArray(c.claimedBy) ? c.claimedBy : []).map(w => `${String(w?.builder)} (${String(w?.org)})`).join(', ')),
          h('td', null, (Array.isArray(c.refs) ? c.refs : []).map(String).join(', ')))), { 'data-testid': 'unverified-table', class: 'stack' })),
    section('matrix', 'Builder × commit matrix',
      shown.length === 0
        ? note('Nothing to show yet.')
        : [
            h('div', { class: 'table-wrap' }, h('table', { class: 'matrix', 'data-testid': 'matrix-table' },
              h('caption', null, 'What each builder said about each commit (newest first)'),
              h('thead', null, matrixHead), h('tbody', null, matrixRows))),
            legend()
          ])
  ]
}

function legend () {
  const items = [
    ['agrees', 'built the trusted result'],
    ['dissents', 'built a different result than the trusted one'],
    ['voted', 'built a result; no result is trusted yet'],
    ['failed', 'signed a build failure (never a vote)'],
    ['equivocated', 'signed two different results or forked its log: what it signed is shown, not counted'],
    ['none', 'no build result from this builder yet']
  ]
  return h('ul', { class: 'legend', 'aria-label': 'Legend' }, items.map(([r, text]) => h('li', null, resultBadge(r), ' ', text)))
}

/** How many of the newest commits the reproducibility rates cover. */
const RATE_WINDOW = 50

function reproducibilitySection (stats) {
  const r = stats.repo
  const final = r.trusted + r.disputed + r.failed
  const rows = stats.builders.map(x => h('tr', { 'data-testid': 'builder-rate', 'data-builder': x.builder },
    h('th', { scope: 'row' }, x.builder, h('span', { class: 'org' }, x.org)),
    h('td', { class: 'num', 'data-testid': 'builder-rate-value' }, M.formatRate(x.rate, x.agrees, x.answered)),
    h('td', { class: 'num' }, String(x.dissents)),
    h('td', { class: 'num' }, String(x.failed)),
    h('td', { class: 'num' }, String(x.equivocated))))
  return section('reproducibility', 'Reproducibility',
    h('p', { class: 'rate-line', 'data-testid': 'repo-rate' },
      h('strong', null, M.formatRate(r.rate, r.trusted, final)),
      ` of the last ${r.commits} commit${r.commits === 1 ? '' : 's'} with a final answer are trusted (${r.trusted} trusted, ${r.disputed} disputed, ${r.failed} failed; ${r.pending} still pending).`),
    rows.length === 0 ? null : table(`Per builder, over the trusted commits among the last ${r.commits}: how often it built the trusted result`, ['Builder', 'Built the trusted result', 'Dissented', 'Failed', 'Equivocated (not counted)'], rows, { class: 'rates stack', 'data-testid': 'builder-rates' }))
}

const claimCache = new Map() // `${repoId}/${commit}` -> { at, claims }

/**
 * What each equivocating builder signed on each shown commit, read from the commit's envelopes
 * (the list API marks the cell 'equivocated' without a digest). Cached for 15 s per commit.
 */
async function loadEquivocatorClaims (repoId, commits) {
  const out = new Map()
  const wanted = commits.filter(c => (Array.isArray(c.builders) ? c.builders : []).some(x => x?.result === 'equivocated'))
  await Promise.all(wanted.slice(0, 40).map(async c => {
    const key = `${repoId}/${c.commit}`
    const hit = claimCache.get(key)
    if (hit !== undefined && Date.now() - hit.at < 15_000) { out.set(c.commit, hit.claims); return }
    try {
      const r = await getJson(`/v1/repos/${encodeURIComponent(repoId)}/commits/${c.commit}`)
      const claims = equivocatorClaimsOf(r?.decision ?? {}, `${repoId}@${c.commit}`, Array.isArray(r?.envelopes) ? r.envelopes.map(e => ({ raw: e, ...M.decodeEnvelope(e) })) : [])
      claimCache.set(key, { at: Date.now(), claims })
      out.set(c.commit, claims)
    } catch { /* the cell then says "not counted" without a digest */ }
  }))
  return out
}

/** builder name -> its newest build (else failure) claim for the commit, for each equivocator of the decision. */
function equivocatorClaimsOf (d, subjectName, decoded) {
  const claims = new Map()
  for (const q of Array.isArray(d.equivocators) ? d.equivocators : []) {
    if (typeof q?.builder !== 'string') continue
    const mine = decoded.filter(e => e.ok && e.keyid === q.keyid && (e.info.kind === 'build' || e.info.kind === 'failure') && e.info.subjects[0]?.name === subjectName)
    mine.sort((a, b) => (a.info.kind === b.info.kind ? (b.info.seq ?? -1) - (a.info.seq ?? -1) : a.info.kind === 'build' ? -1 : 1))
    if (mine.length > 0) claims.set(q.builder, { kind: mine[0].info.kind, narSha256: mine[0].info.narSha256, reason: mine[0].info.reason, all: mine })
  }
  return claims
}

async function viewCommit (repoId, commit) {
  document.title = `${M.shortHex(commit, 12)} · ${repoId} · Quorate auditor`
  const r = await getJson(`/v1/repos/${encodeURIComponent(repoId)}/commits/${commit}`)
  const d = r?.decision ?? {}
  const status = M.statusOf(d.status)
  const results = Array.isArray(d.results) ? d.results : []
  const supporters = Array.isArray(d.supporters) ? d.supporters : []
  const dissenters = Array.isArray(d.dissenters) ? d.dissenters : []
  // Every counted vote: a node with the newer decision sends `votes`; dissent is relative to a trusted result.
  const votes = Array.isArray(d.votes) ? d.votes : [...supporters, ...dissenters]
  const disagreement = status !== 'trusted' && new Set(votes.map(v => v?.resultKey)).size >= 2
  const failures = Array.isArray(d.failures) ? d.failures : []
  const equivocators = Array.isArray(d.equivocators) ? d.equivocators : []
  const notHeard = Array.isArray(d.notHeardFrom) ? d.notHeardFrom : []

  // Envelopes, decoded here; matched to the decision by envelope id (SHA-256 of the PAE),
  // and to builders through the policy's keyids, never through what the payload claims.
  const decoded = (Array.isArray(r?.envelopes) ? r.envelopes : []).map(e => ({ raw: e, ...M.decodeEnvelope(e) }))
  const byId = new Map(decoded.filter(e => e.id !== undefined).map(e => [e.id, e]))
  const builderOfKey = (keyid) => state.policy.keyToBuilder.get(keyid)

  const rows = []
  const verdictFor = new Map()
  const supporterIds = new Set(supporters.map(v => v.envelopeId))
  for (const v of votes) if (!verdictFor.has(v.builder) || supporterIds.has(v.envelopeId)) verdictFor.set(v.builder, { result: status !== 'trusted' ? 'voted' : supporterIds.has(v.envelopeId) ? 'agrees' : 'dissents', vote: v })
  // failures come in log order per builder: the newest one says whether it retries (a reopened final failure is signed again as not final)
  for (const f of failures) if (verdictFor.get(f.builder)?.vote === undefined) verdictFor.set(f.builder, { result: 'failed', failure: f })
  const claims = equivocatorClaimsOf(d, `${repoId}@${commit}`, decoded)
  for (const e of equivocators) verdictFor.set(e.builder, { result: 'equivocated', equivocation: e, claim: claims.get(e.builder) })
  // Every builder of the policy appears, including those heard from only through a ref observation.
  const names = [...new Set([...state.policy.builders.map(b => b.name), ...verdictFor.keys(), ...notHeard])].filter(n => typeof n === 'string').sort()
  for (const name of names) {
    const v = verdictFor.get(name)
    const res = v?.result ?? 'none'
    const envId = v?.vote?.envelopeId ?? v?.failure?.envelopeId ?? v?.claim?.all[0]?.id
    const env = envId !== undefined ? byId.get(envId) : undefined
    const org = v?.vote?.org ?? v?.failure?.org ?? v?.equivocation?.org ?? state.policy.builders.find(b => b.name === name)?.org ?? ''
    rows.push(h('tr', { class: `row-${M.resultOf(res)}`, 'data-testid': 'builder-row', 'data-builder': name, 'data-result': M.resultOf(res) },
      h('th', { scope: 'row' }, name),
      h('td', null, org),
      h('td', null, resultBadge(res)),
      h('td', null, v?.vote !== undefined ? digest(v.vote.narSha256) : v?.failure !== undefined ? h('span', null, h('span', { class: 'cell-note', 'data-testid': 'failure-state' }, M.failureState(v.failure)), ' ', h('span', { class: 'reason', 'data-testid': 'failure-reason' }, v.failure.reason ?? '')) : v?.equivocation !== undefined ? equivocatorCell(v) : '—'),
      h('td', null, env?.info?.builderId ? code(env.info.builderId) : '—'),
      h('td', null, env?.info?.seq ?? '—'),
      h('td', null, when(env?.info?.finishedOn)),
      h('td', null, M.logHref(env?.info?.logSha256) !== undefined
        ? h('a', { href: M.logHref(env.info.logSha256), 'data-testid': 'build-log-link', title: `build log, sha256 ${env.info.logSha256} (signed); a log over the recipe's maxLogBytes is kept as its head and tail` }, 'log')
        : '—')))
  }

  const callouts = []
  if (status === 'trusted' && dissenters.length > 0) {
    callouts.push(h('div', { class: 'callout callout-dissent', role: 'note', 'data-testid': 'dissent' },
      h('strong', null, `${dissenters.length} dissenting builder${dissenters.length === 1 ? '' : 's'}: `),
      dissenters.map((x, i) => [i > 0 ? '; ' : '', h('span', { class: 'who' }, x.builder), ` (${x.org}) built `, digest(x.narSha256)]),
      '. A dissent does not change a trusted decision, but it is worth a look: a compromised or broken builder, or an unreproducible build.'))
  }
  if (status === 'failed') callouts.push(h('div', { class: 'callout callout-disputed', role: 'alert', 'data-testid': 'failed-callout' }, `Failed: the build failed on the organizations that answered and no result can reach the threshold. Do not deploy this commit. ${failures.length} signed failure${failures.length === 1 ? '' : 's'} below give the reasons.`))
  if (status === 'pending' && disagreement) callouts.push(h('div', { class: 'callout callout-pending', role: 'note', 'data-testid': 'pending-disagreement' }, 'Pending, and the builders heard so far disagree: no result is trusted yet, so none is the reference. The results are compared side by side below; the organizations still open decide.'))
  if (status === 'disputed') callouts.push(h('div', { class: 'callout callout-disputed', role: 'alert' }, 'Disputed: two or more results have support and none reaches the threshold. Do not deploy this commit until the difference is explained.'))
  for (const c of Array.isArray(d.conflictedOrgs) ? d.conflictedOrgs : []) {
    callouts.push(h('div', { class: 'callout', 'data-testid': 'conflicted-org' }, 'Organization ', h('strong', null, c.org), ` is conflicted: its builders attest ${Array.isArray(c.resultKeys) ? c.resultKeys.length : 'several'} different results, so it supports none.`))
  }
  for (const m of Array.isArray(d.recipeMismatches) ? d.recipeMismatches : []) {
    callouts.push(h('div', { class: 'callout' }, h('strong', null, m.builder), ` (${m.org}) built with another recipe (`, digest(m.recipeDigest), '): not counted.'))
  }

  const ignored = Array.isArray(d.ignored) ? d.ignored : []
  // A reference result exists only once one is trusted (or when only one result was signed).
  const base = results.find(x => x.resultKey === d.trusted?.resultKey) ?? d.trusted ?? (results.length === 1 ? results[0] : undefined)
  const resultLetter = new Map(results.map((x, i) => [x.resultKey, String.fromCharCode(65 + (i % 26))]))
  const resultRows = results.map(x => h('tr', { 'data-testid': 'result-row', 'data-trusted': x.resultKey === d.trusted?.resultKey ? 'true' : 'false', class: x.resultKey === d.trusted?.resultKey ? 'row-trusted' : null },
    h('th', { scope: 'row' }, resultLetter.get(x.resultKey), x.resultKey === d.trusted?.resultKey ? h('span', { class: 'mini status-trusted' }, 'TRUSTED') : null),
    h('td', null, digest(x.narSha256, 24)),
    h('td', null, digest(x.fileListSha256)),
    h('td', null, orgList(x.supportingOrgs)),
    h('td', null, Array.isArray(x.builders) ? x.builders.join(', ') : '')))

  const [fileDiff, outputFiles] = await Promise.all([
    d.trusted !== undefined || results.length < 2 ? fileDiffSection(results, base, resultLetter) : sideBySideSection(results, resultLetter),
    outputFilesSection(base, resultLetter, d.trusted !== undefined)])
  const git = M.gitInfo(r?.git)

  return [
    h('h1', null, 'Commit ', h('span', { class: 'mono', 'data-testid': 'commit-id' }, commit)),
    h('p', { class: 'headline' }, statusBadge(status), disagreement ? [' ', disagreementBadge()] : null, ' ', h('span', { 'data-testid': 'commit-summary' }, typeof d.summary === 'string' ? d.summary : '')),
    h('dl', { class: 'facts' },
      h('dt', null, 'Repository'), h('dd', null, h('a', { href: M.repoHref(repoId) }, repoId)),
      git !== undefined ? [
        h('dt', null, 'Subject ', unsignedMark()), h('dd', { 'data-testid': 'git-subject' }, git.subject ?? '—'),
        h('dt', null, 'Author ', unsignedMark()), h('dd', { 'data-testid': 'git-author' }, git.author ?? '—'),
        h('dt', null, 'Date ', unsignedMark()), h('dd', { 'data-testid': 'git-date' }, git.date ?? '—')
      ] : null,
      h('dt', null, 'Trusted digest (narSha256)'), h('dd', { 'data-testid': 'trusted-digest' }, d.trusted?.narSha256 !== undefined ? code(d.trusted.narSha256) : '—'),
      h('dt', null, 'Agreeing organizations'), h('dd', null, orgList(d.trusted?.supportingOrgs)),
      h('dt', null, 'Quorum'), h('dd', null, `${d.threshold ?? '?'} of ${d.organizations ?? '?'} organizations (${d.mode ?? 'majority'})`),
      h('dt', null, 'Policy digest'), h('dd', null, code(typeof r?.policyDigest === 'string' ? r.policyDigest : ''))),
    callouts,
    section('builders', 'Builders', table('What each builder in the policy said about this commit', ['Builder', 'Organization', 'Verdict', 'narSha256 / failure reason', 'Builder id in the attestation', 'Log seq', 'Finished', 'Build log'], rows, { 'data-testid': 'builders-table' })),
    section('results', 'Results', results.length === 0 ? note('No counted result yet.') : table(d.trusted === undefined && results.length > 1 ? 'Distinct results signed for this commit, side by side: none is trusted, so none is the reference' : 'Distinct results signed for this commit', ['Result', 'narSha256', 'File list', 'Supporting organizations', 'Builders'], resultRows, { 'data-testid': 'results-table' })),
    fileDiff,
    fingerprintSection(decoded, builderOfKey),
    equivocationSection(equivocators, Array.isArray(r?.equivocationProofs) ? r.equivocationProofs : [], builderOfKey),
    outputFiles,
    section('envelopes', 'Envelopes',
      note(`${decoded.length} envelope${decoded.length === 1 ? '' : 's'} known to this node for this commit${ignored.length > 0 ? `, ${ignored.length} ignored by the decision` : ''}.`),
      ignored.length > 0 ? h('ul', { class: 'ignored', 'data-testid': 'ignored' }, ignored.map(x => h('li', null, digest(x.envelopeId), ': ', x.reason ?? ''))) : null,
      envelopeTable(decoded, builderOfKey))
  ]
}

async function fileDiffSection (results, base, letter) {
  const intro = 'Which files differ between the trusted result and every other result. File lists come from this node\'s blob store and are checked against the signed digest; where this node does not hold one, the signed top-level file subjects are compared instead.'
  const others = results.filter(x => x.resultKey !== base?.resultKey)
  if (base === undefined || others.length === 0) {
    return section('file-diff', 'File-level differences', note(intro), note(results.length === 0 ? 'No result to compare yet.' : 'Every counted builder produced the same result: nothing differs.'))
  }
  const baseList = await loadFileList(base.fileListSha256)
  const parts = []
  for (const other of others) {
    const otherList = await loadFileList(other.fileListSha256)
    let a
    let b
    let how
    if (baseList.files !== undefined && otherList.files !== undefined) {
      a = baseList.files; b = otherList.files; how = 'full file lists'
    } else {
      a = baseList.files !== undefined ? M.topLevelFiles(baseList.files) : M.filesFromSubjects(base.subjects)
      b = otherList.files !== undefined ? M.topLevelFiles(otherList.files) : M.filesFromSubjects(other.subjects)
      how = `top-level files only: ${[baseList.files === undefined ? `result ${letter.get(base.resultKey)}: ${baseList.error}` : '', otherList.files === undefined ? `result ${letter.get(other.resultKey)}: ${otherList.error}` : ''].filter(Boolean).join('; ')}`
    }
    const changes = M.diffFiles(a, b)
    const rows = changes.map(c => h('tr', { class: `change-${c.change}`, 'data-testid': 'file-diff-row', 'data-change': c.change },
      h('td', null, h('span', { class: ['change', `change-badge-${c.change}`] }, c.change)),
      h('th', { scope: 'row', class: 'path', 'data-testid': 'file-path' }, c.path),
      h('td', { class: 'num' }, M.formatSize(c.base?.size)),
      h('td', { class: 'num' }, M.formatSize(c.other?.size)),
      h('td', { 'data-testid': 'hash-base' }, c.base?.sha256 !== undefined ? code(c.base.sha256) : c.base?.target !== undefined ? `→ ${c.base.target}` : c.base !== undefined ? c.base.type : '—'),
      h('td', { 'data-testid': 'hash-other' }, c.other?.sha256 !== undefined ? code(c.other.sha256) : c.other?.target !== undefined ? `→ ${c.other.target}` : c.other !== undefined ? c.other.type : '—'),
      h('td', null, c.differs.join(', '))))
    const baseName = `the trusted result ${letter.get(base.resultKey)}`
    parts.push(h('div', { class: 'diff-block', 'data-testid': 'diff-block', 'data-result': other.narSha256 },
      h('h3', null, `Result ${letter.get(other.resultKey)} (built by ${Array.isArray(other.builders) ? other.builders.join(', ') : '?'}) compared with ${baseName}`),
      h('p', { class: 'note' }, `Compared: ${how}.`),
      changes.length === 0
        ? note('No file-level difference found in what could be compared (the difference may be in metadata, deeper files or subjects).')
        : table(`${changes.length} file${changes.length === 1 ? '' : 's'} differ`, ['Change', 'Path', `Size (${letter.get(base.resultKey)})`, `Size (${letter.get(other.resultKey)})`, `SHA-256 (${letter.get(base.resultKey)})`, `SHA-256 (${letter.get(other.resultKey)})`, 'What differs'], rows, { class: 'diff-table' })))
  }
  return section('file-diff', 'File-level differences', note(intro), parts)
}

async function outputFilesSection (base, letter, trusted) {
  if (base === undefined) return null
  const list = await loadFileList(base.fileListSha256)
  const files = list.files ?? M.filesFromSubjects(base.subjects)
  const limit = 300
  const rows = files.slice(0, limit).map(f => h('tr', { 'data-testid': 'output-file' },
    h('th', { scope: 'row', class: 'path' }, f.path),
    h('td', null, f.type + (f.executable === true ? ' (executable)' : '')),
    h('td', { class: 'num' }, M.formatSize(f.size)),
    h('td', null, f.sha256 !== undefined ? code(f.sha256) : f.target !== undefined ? `→ ${f.target}` : '')))
  return section('output-files', `Output files of ${trusted ? 'the trusted ' : ''}result ${letter.get(base.resultKey)}${trusted ? '' : ' (not trusted yet)'}`,
    note(list.files !== undefined ? `The file list signed by the builders (${files.length} entries), as held by this node and checked against its digest.` : `This node does not hold the file list (${list.error}); showing the signed top-level file subjects.`),
    h('details', { 'data-key': 'output-files', open: files.length <= 40 }, h('summary', null, `${files.length} entr${files.length === 1 ? 'y' : 'ies'}`),
      table(null, ['Path', 'Type', 'Size', 'SHA-256'], rows, { class: 'files-table' }),
      files.length > limit ? note(`… and ${files.length - limit} more.`) : null))
}

/**
 * No result is trusted: every result's files in columns of equal rank, only the paths that are
 * not the same in all of them. Nobody is "the deviation" until a quorum says so.
 */
async function sideBySideSection (results, letter) {
  const lists = await Promise.all(results.map(async x => {
    const l = await loadFileList(x.fileListSha256)
    return l.files !== undefined ? { files: l.files, full: true } : { files: M.filesFromSubjects(x.subjects), full: false, error: l.error }
  }))
  const partial = lists.some(l => !l.full)
  const rows = M.sideBySide(lists.map(l => partial && l.full ? M.topLevelFiles(l.files) : l.files))
  const cellFor = (e) => e === undefined ? h('span', { class: 'muted' }, 'absent') : e.sha256 !== undefined ? [code(e.sha256), e.size !== undefined ? h('span', { class: 'muted' }, ` ${M.formatSize(e.size)}`) : null, e.executable === true ? ' (executable)' : null] : e.target !== undefined ? `→ ${e.target}` : e.type
  const head = ['Path', ...results.map(x => `Result ${letter.get(x.resultKey)} (${Array.isArray(x.builders) ? x.builders.join(', ') : '?'})`)]
  return section('file-diff', 'Results side by side',
    note('No result is trusted yet, so none is the reference: each result\'s files are shown in its own column, only where they are not all the same. File lists come from this node\'s blob store, checked against the signed digests.'),
    partial ? h('p', { class: 'note' }, `Compared: top-level files only (${lists.map((l, i) => l.full ? '' : `result ${letter.get(results[i].resultKey)}: ${l.error}`).filter(Boolean).join('; ')}).`) : null,
    h('div', { 'data-testid': 'side-by-side' },
      rows.length === 0
        ? note('No file-level difference found in what could be compared (the difference may be in metadata, deeper files or subjects).')
        : table(`${rows.length} path${rows.length === 1 ? ' differs' : 's differ'}`, head, rows.map(row => h('tr', { 'data-testid': 'side-by-side-row' },
          h('th', { scope: 'row', class: 'path', 'data-testid': 'file-path' }, row.path),
          row.entries.map((e, i) => h('td', { 'data-testid': 'side-by-side-cell', 'data-result': results[i].narSha256 }, cellFor(e))))), { class: 'diff-table' })))
}

/** An equivocator's row: what it signed on this commit, marked not counted. */
function equivocatorCell (v) {
  const how = v.equivocation.kind === 'log-fork' ? 'forked its log' : 'two results for one build'
  const c = v.claim
  return h('span', { 'data-testid': 'uncounted-claim' },
    c === undefined ? `equivocated (${how}): nothing signed for this commit` : c.kind === 'build' ? ['signed ', digest(c.narSha256), ' '] : ['signed a failure: ', h('span', { class: 'reason' }, c.reason ?? ''), ' '],
    c === undefined ? null : h('span', { class: 'not-counted' }, `not counted (equivocated: ${how})`))
}

function fingerprintSection (decoded, builderOfKey) {
  // One fingerprint per builder: its newest build attestation (else failure) for this commit.
  const perBuilder = new Map()
  for (const e of decoded) {
    if (!e.ok || (e.info.kind !== 'build' && e.info.kind !== 'failure')) continue
    const who = builderOfKey(e.keyid)
    const name = who?.name ?? `unknown key ${M.shortHex(e.keyid, 12)}`
    const prev = perBuilder.get(name)
    if (prev === undefined || (prev.info.kind === 'failure' && e.info.kind === 'build') || (prev.info.kind === e.info.kind && (e.info.seq ?? -1) > (prev.info.seq ?? -1))) perBuilder.set(name, e)
  }
  const entries = [...perBuilder].sort(([a], [b]) => a < b ? -1 : 1).map(([builder, e]) => ({ builder, fingerprint: e.info.fingerprint }))
  if (entries.length === 0) return section('fingerprints', 'Environment fingerprints', note('No build attestation yet.'))
  const cmp = M.compareFingerprints(entries)
  const rows = cmp.fields.map(f => h('tr', { class: f.differs ? 'differs' : null, 'data-testid': 'fingerprint-row', 'data-field': f.key, 'data-differs': f.differs ? 'true' : 'false' },
    h('th', { scope: 'row' }, f.key, f.differs ? h('span', { class: 'differs-mark', title: 'values differ between builders' }, ' ≠') : null),
    f.values.map(v => h('td', null, v === '' ? h('span', { class: 'muted' }, '—') : v))))
  return section('fingerprints', 'Environment fingerprints',
    note('What each builder reports it built on (the attestation\'s internalParameters): OS, kernel, CPU model, tool versions and sandbox. Builds that depend on the CPU model or a tool version can differ for honest reasons.'),
    h('p', { class: cmp.differing > 0 ? 'fp-summary fp-differ' : 'fp-summary', 'data-testid': 'fingerprint-summary' },
      cmp.differing > 0 ? `${cmp.differing} field${cmp.differing === 1 ? '' : 's'} differ between builders (marked ≠).` : 'All builders report the same environment.'),
    rootNote(cmp),
    table(null, ['Field', ...cmp.builders], rows, { class: 'fp-table', 'data-testid': 'fingerprint-table' }))
}

/** What the fingerprints say about build roots (recipe.root): different roots, or differing host toolchains without one. */
function rootNote (cmp) {
  const differs = cmp.fields.filter(f => f.differs).map(f => f.key)
  const rooted = cmp.fields.some(f => f.key === 'root.manifestDigest')
  let text = null
  if (differs.some(k => k.startsWith('root.'))) text = 'The builders used different build roots (or some none): compare root.manifestDigest.'
  else if (differs.some(k => k.startsWith('tools.') && k !== 'tools.git' && k !== 'tools.bwrap')) text = rooted ? 'The builders report different tool versions inside the same build root.' : 'No common build root: the builders used their hosts\' toolchains, which differ. Pinning one (recipe.root) makes them build with the same compiler.'
  else if (rooted) text = 'All builders built in the same pinned build root.'
  return text === null ? null : h('p', { class: 'fp-summary', 'data-testid': 'fingerprint-root' }, text)
}

function equivocationSection (equivocators, proofs, builderOfKey) {
  const blocks = []
  const shownIds = new Set()
  const pairView = (pair) => h('div', { class: 'proof-pair' }, pair.map((raw, i) => {
    const e = M.decodeEnvelope(raw)
    if (e.id !== undefined) shownIds.add(e.id)
    return h('div', { class: 'proof-side', 'data-testid': 'proof-side' },
      h('h4', null, `Envelope ${i + 1}`),
      h('dl', { class: 'facts' },
        h('dt', null, 'Envelope id'), h('dd', null, digest(e.id, 24)),
        h('dt', null, 'Kind'), h('dd', null, e.ok ? e.info.kind : `undecodable: ${e.error}`),
        h('dt', null, 'Builder id in the attestation'), h('dd', { 'data-testid': 'proof-builder-id' }, e.info?.builderId ? code(e.info.builderId) : '—'),
        h('dt', null, 'Log seq'), h('dd', null, e.info?.seq ?? '—'),
        h('dt', null, 'narSha256'), h('dd', null, digest(e.info?.narSha256, 24))),
      h('details', { 'data-key': `proof-${e.id}` }, h('summary', null, 'Signed statement'), h('pre', { class: 'json' }, e.ok ? JSON.stringify(e.statement, null, 2) : JSON.stringify(raw, null, 2))))
  }))
  for (const q of equivocators) {
    blocks.push(h('div', { class: 'callout callout-equivocation', 'data-testid': 'equivocation', 'data-builder': q.builder },
      h('p', null, h('strong', null, q.builder), ` (${q.org}) equivocated (${q.kind === 'log-fork' ? 'two different envelopes at one position of its log' : 'two different results for the same build'}): none of its attestations count for this commit or any other commit of this repository; what it signed here is still shown above, marked not counted. Both signed envelopes are the proof:`),
      Array.isArray(q.envelopes) && q.envelopes.length === 2 ? pairView(q.envelopes) : null))
  }
  const others = proofs.filter(p => Array.isArray(p) && p.length === 2).filter(p => {
    const ids = p.map(x => M.decodeEnvelope(x).id)
    return !ids.every(id => shownIds.has(id))
  })
  if (others.length > 0) {
    blocks.push(h('details', { 'data-key': 'repo-proofs' }, h('summary', null, `${others.length} other equivocation proof${others.length === 1 ? '' : 's'} stored for this repository`),
      others.map(p => {
        const who = builderOfKey(M.decodeEnvelope(p[0]).keyid)
        return h('div', { class: 'proof', 'data-testid': 'stored-proof' }, h('p', null, 'Signer: ', who?.name ?? 'a key not in the policy'), pairView(p))
      })))
  }
  return section('equivocations', 'Equivocation proofs', blocks.length > 0 ? blocks : note('None: no builder signed two different results for this build or forked its log.'))
}

function envelopeTable (decoded, builderOfKey) {
  const rows = decoded.map(e => {
    const who = builderOfKey(e.keyid)
    return h('tr', { 'data-testid': 'envelope-row' },
      h('td', null, digest(e.id)),
      h('td', null, who !== undefined ? `${who.name}${who.revoked ? ' (revoked key)' : ''}` : `key ${M.shortHex(e.keyid, 12)} (not in the policy)`),
      h('td', null, e.ok ? e.info.kind : `undecodable: ${e.error}`),
      h('td', null, e.info?.seq ?? '—'),
      h('td', null, e.info?.kind === 'ref' ? e.info.ref : e.info?.kind === 'build' ? digest(e.info.narSha256) : e.info?.kind === 'failure' ? e.info.reason : ''),
      h('td', null, h('details', { 'data-key': `env-${e.id}` }, h('summary', null, 'statement'), h('pre', { class: 'json' }, e.ok ? JSON.stringify(e.statement, null, 2) : JSON.stringify(e.raw, null, 2)))))
  })
  return h('details', { 'data-key': 'envelopes' }, h('summary', null, 'Show every envelope'),
    table(null, ['Envelope id', 'Signer (by keyid)', 'Kind', 'Log seq', 'Says', 'Decoded'], rows, { class: 'env-table' }))
}

// ---- live updates -------------------------------------------------------------------------

function setLive (mode, text) {
  $live.className = `live live-${mode}`
  $live.dataset.state = mode
  $live.textContent = text
}

function relevant (ev) {
  const r = state.route
  if (r.view === 'home') return ev.type === 'decision' || ev.type === 'attestation'
  if (r.view === 'repo') return ev.repoId === r.repoId
  if (r.view === 'commit') return ev.repoId === r.repoId && (ev.commit === r.commit || ev.type === 'equivocation')
  return false
}

function describeEvent (ev) {
  const where = `${typeof ev.repoId === 'string' ? ev.repoId : '?'}${typeof ev.commit === 'string' ? `@${M.shortHex(ev.commit, 8)}` : ''}`
  if (ev.type === 'decision') return `decision ${where}: ${M.statusOf(ev.status)}`
  if (ev.type === 'attestation') return `${ev.kind ?? 'attestation'} from ${ev.builder ?? '?'} for ${where}`
  if (ev.type === 'build') return `build ${ev.phase ?? ''} ${where}`
  if (ev.type === 'equivocation') return `equivocation by ${ev.builder ?? '?'} in ${where}`
  return ''
}

let fallbackPoll
function connectEvents () {
  if (typeof EventSource !== 'function') { setLive('off', 'no live updates'); fallbackPoll = setInterval(() => scheduleRefresh(0), 15_000); return }
  const es = new EventSource('/v1/events')
  let interrupted = false
  es.addEventListener('open', () => {
    setLive('on', 'live')
    clearInterval(fallbackPoll); fallbackPoll = undefined
    if (interrupted) scheduleRefresh(0) // catch up on what happened while disconnected
    interrupted = false
  })
  es.addEventListener('error', () => {
    interrupted = true
    setLive(es.readyState === EventSource.CLOSED ? 'off' : 'connecting', es.readyState === EventSource.CLOSED ? 'offline' : 'reconnecting…')
    if (fallbackPoll === undefined) fallbackPoll = setInterval(() => scheduleRefresh(0), 15_000)
  })
  for (const type of ['decision', 'attestation', 'build', 'equivocation']) {
    es.addEventListener(type, (msg) => {
      let ev
      try { ev = JSON.parse(msg.data) } catch { return }
      if (ev === null || typeof ev !== 'object') return
      ev.type = type
      const text = describeEvent(ev)
      $activity.textContent = M.displayText(text)
      $activity.title = `last event ${new Date().toISOString().slice(11, 19)} UTC`
      if (relevant(ev)) scheduleRefresh(state.route.view === 'home' ? 1500 : 400)
    })
  }
}

async function loadNodeInfo () {
  try {
    const s = await getJson('/v1/status')
    const peers = Array.isArray(s?.peers) ? s.peers.length : 0
    // Build roots the node cannot pull or verify: which image, and what the registry answered (the jobs wait).
    const roots = Array.isArray(s?.rootProblems) ? s.rootProblems.filter(p => typeof p?.image === 'string' && typeof p?.problem === 'string') : []
    const rootText = roots.length === 0 ? '' : ` · build root unavailable: ${roots.map(p => p.problem).join('; ')}`
    $nodeInfo.textContent = M.displayText(`node ${typeof s?.name === 'string' ? s.name : '?'}${typeof s?.builder === 'string' ? ` (builder ${s.builder})` : ''} · ${peers} peer${peers === 1 ? '' : 's'}${rootText}`)
  } catch {
    $nodeInfo.textContent = ''
  }
}

connectEvents()
void loadNodeInfo()
void render()

// The auditor dashboard end to end: real node processes on 127.0.0.1 building a real git
// repository (one of them a compromised CI), and the page they serve driven in headless Debian
// Chromium through playwright-core. Asserts what a person sees: the repository, the commit's
// decision, the builder × commit matrix, the drill-down (dissenter, file-level difference,
// fingerprints), a hostile file name shown as text and never run, and a new commit appearing
// without a reload, a commit whose build fails everywhere, a tie shown side by side with no
// baseline, an equivocator's uncounted claims on every commit, and every page at phone width
// (390 px) without horizontal overflow. Leaves screenshots in test-artifacts/ for a reviewer.
import { createHash } from 'node:crypto'
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import { unlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { chromium, type Browser, type Page, type Locator } from 'playwright-core'
import { detectSandbox } from '@quorate/builder'
import { parseBuilderKeyFile, signStatement, PROVENANCE_PREDICATE, type Envelope } from '@quorate/core'
import { startNetwork, createPeerKey, type Network } from '@quorate/network'
// @ts-expect-error plain JS helper shared with the demo
import { ROOT, addCommit, commitAll, initNetwork, startNodeProcess, stopNodeProcess, waitFor, getJson } from '../scripts/devnet.js'

const CHROMIUM = '/usr/bin/chromium'
const ARTIFACTS = join(ROOT, 'test-artifacts')
/** A file name a signer controls (it is in the build output, hence in the signed file list and subjects). */
const HOSTILE_FILE = 'notes <img src=x onerror="window.__pwned=1">.txt'
/** Strings a compromised key signs into an attestation: an environment fingerprint value and a builder id. */
const HOSTILE_CPU = '<img src=x onerror="window.__pwned=2">'
const HOSTILE_ID = 'https://quorate.dev/builders/mallory/"><svg onload="window.__pwned=3">\u202eexe.txt\u009b2J'
/** How the page must show it: the bidi override (U+202E) and the C1 CSI (U+009B) as visible escapes. */
const HOSTILE_ID_SHOWN = 'https://quorate.dev/builders/mallory/"><svg onload="window.__pwned=3">\\u202eexe.txt\\u009b2J'

// The build writes the hostile file next to the usual outputs. Its name sorts after the others,
// so the compromised builder's wrapper (which appends to the first file) changes another file.
const BUILD_SH = `#!/bin/sh
set -eu
if [ -f FAIL ]; then echo "deliberate failure: $(cat FAIL)" >&2; exit 3; fi
rm -rf dist && mkdir -p dist
cat src/*.js > dist/app.js
printf 'version %s\\nbuilt-at %s\\n' "$(cat VERSION)" "$SOURCE_DATE_EPOCH" > dist/BUILDINFO
cp NOTES 'dist/${HOSTILE_FILE}'
`

interface DevNode { name: string, org: string, url: string, config: string, member: { multiaddr: string, keyid: string }, tamper?: boolean }
interface FileEntry { path: string, type: string, sha256?: string, size?: number }

let work: string
let repoDir: string
let net: { nodes: DevNode[], repoId: string } | undefined
let browser: Browser | undefined
let page: Page
let first: string
let trustedDigest: string
let changed: { path: string, trustedSha: string, tamperedSha: string }
const dialogs: string[] = []
const pageErrors: string[] = []
const cspViolations: string[] = []
let loads = 0
const node = (name: string): DevNode => net!.nodes.find(n => n.name === name)!

function createRepo (dir: string): string {
  mkdirSync(join(dir, 'src'), { recursive: true })
  execFileSync('git', ['init', '-q', '-b', 'main'], { cwd: dir, env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null' } })
  writeFileSync(join(dir, 'build.sh'), BUILD_SH, { mode: 0o755 })
  writeFileSync(join(dir, 'VERSION'), '2.0.0\n')
  writeFileSync(join(dir, 'NOTES'), 'release notes\n')
  writeFileSync(join(dir, 'src', 'greet.js'), 'export const greet = (name) => `hello, ${name}`\n')
  return commitAll(dir, 'dashboard sample project', 1767225600)
}

async function fileList (n: DevNode, sha: string): Promise<FileEntry[]> {
  const res = await fetch(`${n.url}/v1/blobs/${sha}`, { signal: AbortSignal.timeout(5000) })
  if (!res.ok) throw new Error(`${n.name}: blob ${sha}: HTTP ${res.status}`)
  return (JSON.parse(await res.text()) as { files: FileEntry[] }).files
}

/** Polls a locator's text until it matches, within a bound. */
async function textOf (loc: Locator, re: RegExp, timeoutMs = 15_000): Promise<string> {
  return await waitFor(async () => {
    const t = await loc.first().textContent({ timeout: 1000 })
    return t !== null && re.test(t) ? t : undefined
  }, { timeoutMs, intervalMs: 200, what: `text ${String(re)}` })
}

beforeAll(async () => {
  // Fail, never skip: CI installs it (apt-get install chromium).
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: the dashboard test drives Debian's Chromium; install it with "apt-get install -y chromium"`)
  mkdirSync(ARTIFACTS, { recursive: true })
  work = mkdtempSync(join(tmpdir(), 'quorate-dashboard-'))
  repoDir = join(work, 'repo')
  first = createRepo(repoDir)
  net = await initNetwork({
    dir: join(work, 'nodes'),
    repoUrl: repoDir,
    sandbox: (await detectSandbox()) ?? 'none',
    pollSeconds: 1,
    builders: [
      { name: 'alpha-ci', org: 'alpha' },
      { name: 'beta-ci', org: 'beta' },
      { name: 'mallory-ci', org: 'mallory', tamper: true }
    ]
  })
  // A failing build is signed as final at once, so a commit that fails everywhere is `failed`
  // without waiting for retries.
  for (const n of net.nodes) {
    const cfg = JSON.parse(readFileSync(n.config, 'utf8'))
    writeFileSync(n.config, JSON.stringify({ ...cfg, buildAttempts: 1 }, null, 2))
  }
  const [b] = await Promise.all([
    chromium.launch({ executablePath: CHROMIUM, timeout: 30_000, args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'] }),
    ...net.nodes.map(async n => await startNodeProcess(n, {}))
  ])
  browser = b
  // Everyone heard: the honest result trusted by alpha and beta, mallory's result dissenting.
  const d = await waitFor(async () => {
    const r = await getJson(`${node('alpha-ci').url}/v1/repos/${net!.repoId}/commits/${first}`)
    return r.decision.status === 'trusted' && r.decision.results.length === 2 ? r.decision : undefined
  }, { timeoutMs: 90_000, what: 'a trusted decision with the dissent heard' })
  trustedDigest = d.trusted.narSha256
  // The file the compromised builder changed, computed here from the file list each builder's
  // own node holds, independently of the page.
  const bad = d.results.find((r: { narSha256: string }) => r.narSha256 !== trustedDigest)
  const honest = await fileList(node('alpha-ci'), d.trusted.fileListSha256)
  const tampered = await fileList(node('mallory-ci'), bad.fileListSha256)
  const diffs = honest.filter(f => tampered.find(t => t.path === f.path)?.sha256 !== f.sha256)
  expect(diffs.length).toBe(1)
  changed = { path: diffs[0].path, trustedSha: diffs[0].sha256!, tamperedSha: tampered.find(t => t.path === diffs[0].path)!.sha256! }
  expect(changed.path).not.toBe(HOSTILE_FILE)
  expect(honest.map(f => f.path)).toContain(HOSTILE_FILE)

  page = await browser.newPage({ viewport: { width: 1360, height: 900 } })
  page.setDefaultTimeout(15_000)
  page.on('dialog', async dl => { dialogs.push(dl.message()); await dl.dismiss() })
  page.on('pageerror', err => { pageErrors.push(err.message) })
  page.on('console', m => { if (/Content.Security.Policy/i.test(m.text())) cspViolations.push(m.text()) })
  page.on('load', () => { loads++ })
}, 180_000)

afterAll(async () => {
  await browser?.close().catch(() => {})
  if (net !== undefined) await Promise.all(net.nodes.map(async n => await stopNodeProcess(n)))
  if (work !== undefined) rmSync(work, { recursive: true, force: true })
}, 60_000)

describe('the auditor dashboard in headless Chromium against a real network', () => {
  it('lists the repository, the commit timeline with its decision and the builder × commit matrix', async () => {
    await page.goto(`${node('alpha-ci').url}/`)
    const repoRow = page.locator('[data-testid=repo-row][data-repo=sample]')
    await repoRow.waitFor()
    expect(await repoRow.locator('a').first().textContent()).toBe('sample')
    await textOf(page.getByTestId('live'), /^live$/)
    expect(await page.getByTestId('policy-quorum').textContent()).toMatch(/^2 of 3 organizations \(majority/)
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-home.png'), fullPage: true })
    // Route parameters are validated before anything is fetched or shown.
    await page.evaluate(() => { location.hash = '#/repo/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E' })
    expect(await textOf(page.getByTestId('error'), /not a valid repository id/)).toContain('This address is not a page of the dashboard')
    await page.evaluate(() => { location.hash = '#/' })
    expect(await page.getByTestId('node-info').textContent()).toMatch(/node alpha-ci \(builder alpha-ci\)/)
    await repoRow.locator('a').first().click()
    await page.waitForURL(/#\/repo\/sample$/)

    const row = page.locator(`[data-testid=commit-row][data-commit="${first}"]`)
    await row.waitFor()
    expect(await row.getByTestId('status').textContent()).toBe('TRUSTED')
    expect(await row.getAttribute('data-status')).toBe('trusted')
    expect(await row.getByTestId('commit-digest').textContent()).toBe(`${trustedDigest.slice(0, 16)}…`)
    expect(await row.textContent()).toContain('alpha, beta')
    // The decision column does not repeat the digest the row already shows.
    const summary = await row.getByTestId('commit-row-summary').textContent()
    expect(summary).toMatch(/by 2 of 3 organizations/)
    expect(summary).not.toContain(trustedDigest)
    // Reproducibility over the last commits: the repository's and each builder's.
    expect(await page.getByTestId('repo-rate').textContent()).toMatch(/^100% \(1 of 1\) of the last 1 commit with a final answer are trusted/)
    const rateOf = async (b: string): Promise<string | null> => await page.locator(`[data-testid=builder-rate][data-builder="${b}"] [data-testid=builder-rate-value]`).textContent()
    expect(await rateOf('alpha-ci')).toBe('100% (1 of 1)')
    expect(await rateOf('mallory-ci')).toBe('0% (0 of 1)')

    const cell = (builder: string): Locator => page.locator(`[data-testid=matrix-cell][data-builder="${builder}"][data-commit="${first}"]`)
    for (const [builder, result] of [['alpha-ci', 'agrees'], ['beta-ci', 'agrees'], ['mallory-ci', 'dissents']]) {
      expect(await cell(builder).getAttribute('data-result'), builder).toBe(result)
      expect(await cell(builder).getAttribute('class')).toContain(`cell-${result}`)
      expect(await cell(builder).textContent()).toContain(result)
    }
    // Coloured: the agreeing and the dissenting cells have different, visible backgrounds.
    const bg = async (l: Locator): Promise<string> => await l.evaluate(el => getComputedStyle(el).backgroundColor)
    const [agree, dissent] = [await bg(cell('alpha-ci')), await bg(cell('mallory-ci'))]
    expect(agree).not.toBe(dissent)
    for (const c of [agree, dissent]) expect(c).not.toMatch(/rgba\(0, 0, 0, 0\)|transparent/)
  })

  it('drills down into the commit: the dissenter, the changed file with both hashes, fingerprints, the hostile file name as text', async () => {
    await page.locator(`[data-testid=commit-row][data-commit="${first}"] a`).first().click()
    await page.waitForURL(new RegExp(`#/repo/sample/commit/${first}$`))
    await page.getByTestId('builders-table').waitFor()
    expect(await page.getByTestId('commit-id').textContent()).toBe(first)
    expect(await page.locator('.headline [data-testid=status]').textContent()).toBe('TRUSTED')
    expect(await page.getByTestId('trusted-digest').textContent()).toBe(trustedDigest)

    const builderRow = (b: string): Locator => page.locator(`[data-testid=builder-row][data-builder="${b}"]`)
    expect(await builderRow('mallory-ci').getAttribute('data-result')).toBe('dissents')
    expect(await builderRow('mallory-ci').textContent()).toContain('dissents')
    expect(await builderRow('alpha-ci').getAttribute('data-result')).toBe('agrees')
    expect(await page.getByTestId('dissent').textContent()).toMatch(/1 dissenting builder: mallory-ci \(mallory\) built/)

    // Each builder's build log, linked by the digest its attestation signs and served by this node (a peer's through the blob protocol).
    for (const b of ['alpha-ci', 'mallory-ci']) {
      const href = await builderRow(b).getByTestId('build-log-link').getAttribute('href')
      expect(href).toMatch(/^\/v1\/logs\/[0-9a-f]{64}$/)
      const res = await fetch(`${node('alpha-ci').url}${href!}`)
      expect(res.status, b).toBe(200)
      expect(createHash('sha256').update(new Uint8Array(await res.arrayBuffer())).digest('hex')).toBe(href!.slice('/v1/logs/'.length))
    }

    // File-level difference: the file the compromised CI altered, listed as changed with both hashes.
    const diffRow = page.locator('[data-testid=file-diff-row]')
    await diffRow.first().waitFor()
    expect(await diffRow.count()).toBe(1)
    expect(await diffRow.getAttribute('data-change')).toBe('changed')
    expect(await diffRow.getByTestId('file-path').textContent()).toBe(changed.path)
    expect(await diffRow.getByTestId('hash-base').textContent()).toBe(changed.trustedSha)
    expect(await diffRow.getByTestId('hash-other').textContent()).toBe(changed.tamperedSha)
    expect(await page.getByTestId('diff-block').textContent()).toContain('built by mallory-ci')

    // Fingerprints: one column per builder, the sandbox each reported, and whether they differ.
    const fpHead = await page.locator('[data-testid=fingerprint-table] thead th').allTextContents()
    expect(fpHead).toEqual(['Field', 'alpha-ci', 'beta-ci', 'mallory-ci'])
    const sandboxRow = page.locator('[data-testid=fingerprint-row][data-field=sandbox] td')
    expect(new Set(await sandboxRow.allTextContents()).size).toBe(1)
    expect(['bwrap', 'none']).toContain(await sandboxRow.first().textContent())
    expect(await page.locator('[data-testid=fingerprint-row][data-field=cpuModel]').count()).toBe(1)
    expect(await page.getByTestId('fingerprint-summary').textContent()).toMatch(/All builders report the same environment|differ between builders/)
    expect(await page.getByTestId('equivocations').textContent()).toContain('None: no builder signed two different results')

    // The hostile file name from the signed file list is shown literally and never becomes markup.
    const hostile = page.locator('[data-testid=output-file] th').filter({ hasText: 'onerror' })
    expect(await hostile.count()).toBe(1)
    expect(await hostile.textContent()).toBe(HOSTILE_FILE)
    expect(await hostile.evaluate(el => el.children.length)).toBe(0)
    expect(await hostile.isVisible()).toBe(true)
    expect(await page.locator('img').count()).toBe(0)
    expect(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined()
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-commit.png'), fullPage: true })
  })

  it('shows a new commit without a reload when the nodes trust it', async () => {
    await page.locator('[data-testid=breadcrumbs] a', { hasText: 'sample' }).click()
    await page.waitForURL(/#\/repo\/sample$/)
    await page.locator(`[data-testid=commit-row][data-commit="${first}"]`).waitFor()
    await page.evaluate(() => { (window as unknown as { __sameDocument?: string }).__sameDocument = 'yes' })
    const loadsBefore = loads

    const second = addCommit(repoDir, 'src/farewell.js', 'export const farewell = (name) => `bye, ${name}`\n', 'add farewell')
    const row = page.locator(`[data-testid=commit-row][data-commit="${second}"]`)
    await row.waitFor({ timeout: 90_000 })
    await textOf(row.getByTestId('status'), /^TRUSTED$/, 90_000)
    const d = await getJson(`${node('alpha-ci').url}/v1/repos/sample/commits/${second}`)
    expect(d.decision.status).toBe('trusted')
    expect(await row.getByTestId('commit-digest').textContent()).toBe(`${d.decision.trusted.narSha256.slice(0, 16)}…`)
    expect(await page.locator(`[data-testid=matrix-cell][data-builder="alpha-ci"][data-commit="${second}"]`).getAttribute('data-result')).toBe('agrees')
    // The newest commit is listed first, and the page is still the same document.
    expect(await page.locator('[data-testid=commit-row]').first().getAttribute('data-commit')).toBe(second)
    expect(await page.evaluate(() => (window as unknown as { __sameDocument?: string }).__sameDocument)).toBe('yes')
    expect(loads).toBe(loadsBefore)
    expect(await page.getByTestId('live').textContent()).toBe('live')

    // Let the last dissent arrive, then keep the picture a person would see.
    await waitFor(async () => await page.locator(`[data-testid=matrix-cell][data-builder="mallory-ci"][data-commit="${second}"]`).getAttribute('data-result') === 'dissents', { timeoutMs: 60_000, what: 'mallory-ci\'s dissent on the new commit' })
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard.png'), fullPage: true })
    expect(existsSync(join(ARTIFACTS, 'dashboard.png'))).toBe(true)
  }, 180_000)

  it('shows a commit whose build fails on every builder with each signed reason', async () => {
    const failing = addCommit(repoDir, 'FAIL', 'missing dependency\n', 'break the build')
    const url = `${node('alpha-ci').url}/v1/repos/sample/commits/${failing}`
    const d = await waitFor(async () => {
      const r = await getJson(url).catch(() => undefined)
      return r !== undefined && r.decision.failures.length === 3 ? r.decision : undefined
    }, { timeoutMs: 90_000, what: 'three signed failures' })
    expect(d.results).toEqual([])
    await page.evaluate((c) => { location.hash = `#/repo/sample/commit/${c}` }, failing)
    await page.getByTestId('builders-table').waitFor()
    await textOf(page.locator('[data-testid=builder-row][data-builder="beta-ci"]'), /failed/)
    for (const b of ['alpha-ci', 'beta-ci', 'mallory-ci']) {
      const row = page.locator(`[data-testid=builder-row][data-builder="${b}"]`)
      expect(await row.getAttribute('data-result'), b).toBe('failed')
      expect(await row.getByTestId('failure-reason').textContent(), b).toMatch(/exit|status 3|failed/)
      expect(await row.getByTestId('failure-state').textContent(), b).toBe('attempt 1, final')
    }
    // The badge says what the node decided (FAILED once no result can reach the quorum).
    const status = (await getJson(url)).decision.status
    expect(await page.locator('.headline [data-testid=status]').textContent()).toBe(({ failed: 'FAILED', pending: 'PENDING', disputed: 'DISPUTED', trusted: 'TRUSTED' } as Record<string, string>)[status])
    // One attempt per build (buildAttempts 1): every failure is final, so no result can reach the quorum.
    expect(status).toBe('failed')
    expect(await page.getByTestId('failed-callout').textContent()).toMatch(/3 signed failures/)
    expect(await page.locator('[data-testid=output-files]').count()).toBe(0)
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-failed.png'), fullPage: true })
    // Repair the build for the next commits.
    unlinkSync(join(repoDir, 'FAIL'))
  }, 120_000)

  it('shows a tie side by side, with no result as the reference, while no result is trusted', async () => {
    // beta-ci is away: alpha-ci and the compromised mallory-ci each sign a different result.
    await stopNodeProcess(node('beta-ci'))
    const tie = addCommit(repoDir, 'src/tie.js', 'export const tie = 1\n', 'a commit two builders disagree on')
    const url = `${node('alpha-ci').url}/v1/repos/sample/commits/${tie}`
    const d = await waitFor(async () => {
      const r = await getJson(url).catch(() => undefined)
      return r !== undefined && r.decision.results.length === 2 ? r.decision : undefined
    }, { timeoutMs: 90_000, what: 'two different results for the tie commit' })
    // Two results with one organization each and one organization open: not trusted (pending
    // with the disagreement shown, under DESIGN's rule; an older core says disputed).
    expect(['pending', 'disputed']).toContain(d.status)
    expect(d.trusted).toBeUndefined()
    const badge = d.status === 'pending' ? 'PENDING' : 'DISPUTED'

    await page.evaluate(() => { location.hash = '#/repo/sample' })
    const row = page.locator(`[data-testid=commit-row][data-commit="${tie}"]`)
    await row.waitFor()
    expect(await row.getByTestId('status').textContent()).toBe(badge)
    if (d.status === 'pending') await textOf(row.getByTestId('disagreement'), /builders disagree/)
    // The repositories page says it too, beside the latest commit.
    await page.evaluate(() => { location.hash = '#/' })
    const repoRow = page.locator('[data-testid=repo-row][data-repo=sample]')
    await textOf(repoRow, new RegExp(tie.slice(0, 12)))
    expect(await repoRow.getByTestId('disagreement').count()).toBe(d.status === 'pending' ? 1 : 0)
    expect(await repoRow.textContent()).toMatch(/\d+ failed/)
    await page.evaluate(() => { location.hash = '#/repo/sample' })
    await row.waitFor()

    await page.evaluate((c) => { location.hash = `#/repo/sample/commit/${c}` }, tie)
    await page.getByTestId('side-by-side').waitFor()
    if (d.status === 'pending') {
      expect(await page.getByTestId('pending-disagreement').textContent()).toMatch(/none is the reference/)
      expect(await page.locator('.headline [data-testid=disagreement]').count()).toBe(1)
    }
    // Neither builder is called the deviation: both are "voted", no "dissents", no "best-supported".
    for (const b of ['alpha-ci', 'mallory-ci']) expect(await page.locator(`[data-testid=builder-row][data-builder="${b}"]`).getAttribute('data-result'), b).toBe('voted')
    expect(await page.locator('[data-result=dissents], [data-testid=dissent]').count()).toBe(0)
    expect(await page.locator('body').textContent()).not.toMatch(/best-supported|compared with the/)
    // One changed file, one column per result, each with its own hash.
    const sbs = page.locator('[data-testid=side-by-side-row]')
    expect(await sbs.count()).toBe(1)
    expect(await sbs.getByTestId('file-path').textContent()).toBe(changed.path)
    const cells = sbs.getByTestId('side-by-side-cell')
    expect(await cells.count()).toBe(2)
    expect(new Set(await cells.allTextContents()).size).toBe(2)
    expect(new Set(await cells.evaluateAll(els => els.map(e => e.getAttribute('data-result'))))).toEqual(new Set(d.results.map((x: { narSha256: string }) => x.narSha256)))
    expect(await page.locator('[data-testid=output-files]').count()).toBe(0)
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-tie.png'), fullPage: true })
  }, 150_000)

  it('shows the equivocation proof, live, when the compromised key signs a second result at the same log position', async () => {
    await page.evaluate(() => { location.hash = '#/repo/sample' })
    await page.locator(`[data-testid=commit-row][data-commit="${first}"] a`).first().click()
    await page.waitForURL(new RegExp(`#/repo/sample/commit/${first}$`))
    await page.getByTestId('builders-table').waitFor()
    expect(await page.getByTestId('equivocations').textContent()).toContain('None')

    // The compromised CI's real key signs a different result for the same build, at the log
    // position its first one used, and gossips it from a peer of its own.
    const m = node('mallory-ci')
    const cfg = JSON.parse(readFileSync(m.config, 'utf8'))
    const key = parseBuilderKeyFile(JSON.parse(readFileSync(resolve(dirname(m.config), cfg.builderKeyFile), 'utf8')), 'mallory-ci key')
    const r = await getJson(`${node('alpha-ci').url}/v1/repos/sample/commits/${first}`)
    const payloadOf = (e: Envelope): any => JSON.parse(Buffer.from(e.payload, 'base64').toString('utf8'))
    const own = (r.envelopes as Envelope[]).find(e => e.signatures[0].keyid === key.keyid && payloadOf(e).predicateType === PROVENANCE_PREDICATE)!
    const forge = (i: number): Uint8Array => {
      const st = payloadOf(own)
      st.subject[0].digest.narSha256 = 'e'.repeat(64)
      st.predicate.buildDefinition.internalParameters.cpuModel = HOSTILE_CPU
      st.predicate.runDetails.builder.id = HOSTILE_ID
      st.predicate.runDetails.metadata.invocationId = `forged-${i}`
      return signStatement(st, key).bytes
    }
    const attacker: Network = await startNetwork({
      peerKey: await createPeerKey(),
      listen: ['/ip4/127.0.0.1/tcp/0'],
      bootstrap: [node('alpha-ci').member.multiaddr],
      loopbackNetwork: true,
      repoIds: ['sample'],
      validate: async () => 'accept'
    })
    const proof = page.locator('[data-testid=equivocation][data-builder="mallory-ci"]')
    try {
      expect(await attacker.waitForTopicPeers('sample', 1, 20_000)).toBe(true)
      // Gossip is lossy while the mesh forms: publish (new bytes each time) until the page shows it.
      await waitFor(async () => {
        if (await proof.count() > 0) return true
        await attacker.publish('sample', forge(Date.now()))
        return false
      }, { timeoutMs: 45_000, intervalMs: 3000, what: 'the equivocation proof on the page' })
    } finally {
      await attacker.stop()
    }
    expect(await proof.textContent()).toMatch(/mallory-ci \(mallory\) equivocated .*none of its attestations count/)
    const sides = proof.getByTestId('proof-side')
    expect(await sides.count()).toBe(2)
    const ids = await sides.getByTestId('proof-builder-id').allTextContents()
    expect(ids.sort()).toEqual(['https://quorate.dev/builders/mallory/mallory-ci', HOSTILE_ID_SHOWN].sort())
    expect(await page.evaluate(() => /[\u202e\u009b]/.test(document.body.innerText))).toBe(false)
    const forgedSide = sides.filter({ hasText: 'svg onload' })
    await forgedSide.locator('summary').click()
    expect(await forgedSide.locator('pre').textContent()).toContain(JSON.stringify(HOSTILE_CPU).slice(1, -1))
    expect(await forgedSide.locator('pre').isVisible()).toBe(true)
    expect(await page.locator('[data-testid=builder-row][data-builder="mallory-ci"]').getAttribute('data-result')).toBe('equivocated')
    // What it signed for this commit is still shown, marked not counted.
    const mine = r.decision.dissenters.find((v: { builder: string }) => v.builder === 'mallory-ci') ?? r.decision.votes?.find((v: { builder: string }) => v.builder === 'mallory-ci')
    const claim = page.locator('[data-testid=builder-row][data-builder="mallory-ci"] [data-testid=uncounted-claim]')
    expect(await claim.textContent()).toMatch(/^signed .*not counted \(equivocated: forked its log\)$/)
    expect(await claim.locator('code').getAttribute('title')).toBe(mine.narSha256)
    // An equivocator's votes are dropped; the honest quorum still holds.
    expect(await page.locator('.headline [data-testid=status]').textContent()).toBe('TRUSTED')
    expect(await page.getByTestId('trusted-digest').textContent()).toBe(trustedDigest)
    expect(await page.locator('img, svg, script:not([src])').count()).toBe(0)
    expect(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined()
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-equivocation.png'), fullPage: true })

    // The proof hides its attestations on every commit of the repository: on the repository
    // page each of its cells says equivocated, with the digest it signed there, not counted.
    await page.evaluate(() => { location.hash = '#/repo/sample' })
    const cell = page.locator(`[data-testid=matrix-cell][data-builder="mallory-ci"][data-commit="${first}"]`)
    await waitFor(async () => await cell.getAttribute('data-result') === 'equivocated', { timeoutMs: 20_000, what: 'the equivocated cell' })
    const commits = (await getJson(`${node('alpha-ci').url}/v1/repos/sample/commits`)).commits as Array<{ commit: string, status: string }>
    for (const c of commits.filter(x => x.status === 'trusted')) {
      const d = (await getJson(`${node('alpha-ci').url}/v1/repos/sample/commits/${c.commit}`)).decision
      expect(d.equivocators.map((e: { builder: string }) => e.builder), c.commit).toEqual(['mallory-ci'])
      const signed = page.locator(`[data-testid=matrix-cell][data-builder="mallory-ci"][data-commit="${c.commit}"]`)
      expect(await signed.getAttribute('data-result'), c.commit).toBe('equivocated')
      expect(await signed.textContent(), c.commit).toMatch(/not counted/)
      expect(await signed.getByTestId('cell-digest').count(), c.commit).toBe(1)
    }
  }, 120_000)

  it('fits a 390 px phone screen on every page: no horizontal overflow', async () => {
    const phone = await browser!.newPage({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true })
    phone.on('pageerror', err => { pageErrors.push(err.message) })
    try {
      const base = node('alpha-ci').url
      const pages: Array<[string, string, string]> = [
        ['home', `${base}/`, '[data-testid=repo-row]'],
        ['repo', `${base}/#/repo/sample`, '[data-testid=commit-row]'],
        ['commit', `${base}/#/repo/sample/commit/${first}`, '[data-testid=builders-table]']
      ]
      for (const [name, url, ready] of pages) {
        await phone.goto(url)
        await phone.locator(ready).first().waitFor()
        const width = await phone.evaluate(() => ({
          doc: document.documentElement.scrollWidth,
          body: document.body.scrollWidth,
          view: window.innerWidth,
          // For the failure message: what sticks out, outside the boxes that scroll by design.
          wide: [...document.querySelectorAll('body *')].filter(el => el.getBoundingClientRect().right > 391 && el.closest('.table-wrap, pre') === null)
            .slice(0, 5).map(el => `${el.parentElement?.tagName.toLowerCase() ?? ''}.${el.parentElement?.className ?? ''} > ${el.tagName.toLowerCase()}.${el.className} (${Math.round(el.getBoundingClientRect().right)} px)`)
        }))
        expect(width.view, `${name}: ${width.wide.join(', ')}`).toBe(390)
        expect(width.doc, name).toBeLessThanOrEqual(390)
        expect(width.body, name).toBeLessThanOrEqual(390)
        // Each commit of the timeline is one block that fits: no sideways scrolling to read it.
        if (name === 'repo') {
          const wrap = phone.locator('[data-testid=timeline-table]').locator('xpath=..')
          expect(await wrap.evaluate(el => el.scrollWidth <= el.clientWidth), 'timeline').toBe(true)
        }
        await phone.screenshot({ path: join(ARTIFACTS, `dashboard-phone-${name}.png`), fullPage: true })
      }
    } finally {
      await phone.close()
    }
  }, 60_000)

  it('ran no hostile script, opened no dialog, broke no CSP rule and threw no error', () => {
    expect(dialogs).toEqual([])
    expect(cspViolations).toEqual([])
    expect(pageErrors).toEqual([])
  })
})

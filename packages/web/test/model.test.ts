// The dashboard's pure module (assets/model.js) against core's reference implementations, and
// static checks that the assets keep to the CSP and never parse strings as HTML.
import { describe, it, expect } from 'vitest'
import { createHash, randomBytes } from 'node:crypto'
import { readFileSync, readdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import { escapeForDisplay, UNSAFE_DISPLAY_CHAR, keyPairFromSeed, keyidOf, signStatement, makeProvenanceStatement, makeFailureStatement, bytesToHex } from '@quorate/core'
import { webAsset } from '@quorate/web'
// @ts-expect-error plain browser ES module without type declarations
import * as M from '../assets/model.js'

const ASSETS = fileURLToPath(new URL('../assets/', import.meta.url))
const RECIPE = { build: ['sh', 'build.sh'], output: 'dist', outputKind: 'dir' as const }
const COMMIT = 'a'.repeat(40)

describe('sha256Hex', () => {
  it('matches node:crypto on the FIPS vectors and on random inputs across block boundaries', () => {
    expect(M.sha256Hex('')).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855')
    expect(M.sha256Hex('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
    for (const n of [1, 55, 56, 63, 64, 65, 119, 120, 128, 1000, 4097]) {
      const b = randomBytes(n)
      expect(M.sha256Hex(new Uint8Array(b))).toBe(createHash('sha256').update(b).digest('hex'))
    }
  })
})

describe('keys and envelopes', () => {
  it('computes the keyid of RFC 8032 test key 1 as DESIGN.md gives it', () => {
    const pub = 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a'
    expect(M.keyidOf(pub)).toBe('74c181c7ad8a0855d4b55e44d2ba87aabdddb196832571f15f92fece332e4916')
    expect(M.keyidOf(pub)).toBe(keyidOf(pub))
  })

  it('decodes a signed provenance envelope: the id core gives, the fingerprint and the builder id', () => {
    const key = keyPairFromSeed(new Uint8Array(32).fill(7))
    const statement = makeProvenanceStatement({
      repoId: 'sample', ref: 'refs/heads/main', commit: COMMIT, recipe: RECIPE, narSha256: 'b'.repeat(64), fileListSha256: 'c'.repeat(64),
      topLevelFiles: [{ name: '<img src=x onerror=alert(1)>.txt', sha256: 'd'.repeat(64) }], logSha256: 'e'.repeat(64),
      fingerprint: { os: 'Debian GNU/Linux 12 (bookworm)', sandbox: 'none', tools: { git: 'git version 2.39.5' } },
      builderId: 'https://quorate.dev/builders/alpha/alpha-ci', invocationId: 'x', startedOn: '2026-01-01T00:00:00Z', finishedOn: '2026-01-01T00:00:01Z', log: { seq: 3, prev: 'f'.repeat(64) }
    })
    const signed = signStatement(statement, key)
    const d = M.decodeEnvelope(JSON.parse(JSON.stringify(signed.envelope)))
    expect(d.ok).toBe(true)
    expect(d.id).toBe(signed.id)
    expect(d.keyid).toBe(key.keyid)
    expect(d.info).toMatchObject({ kind: 'build', narSha256: 'b'.repeat(64), fileListSha256: 'c'.repeat(64), logSha256: 'e'.repeat(64), seq: 3, builderId: 'https://quorate.dev/builders/alpha/alpha-ci' })
    expect(M.logHref(d.info.logSha256)).toBe(`/v1/logs/${'e'.repeat(64)}`)
    expect(M.logHref('../x')).toBeUndefined()
    expect(d.info.fingerprint.tools.git).toBe('git version 2.39.5')
    expect(M.filesFromSubjects(d.info.subjects)).toEqual([{ path: '<img src=x onerror=alert(1)>.txt', type: 'file', sha256: 'd'.repeat(64) }])
  })

  it('decodes a failure envelope with its reason, and refuses what is not an envelope', () => {
    const key = keyPairFromSeed(new Uint8Array(32).fill(9))
    const signed = signStatement(makeFailureStatement({
      repoId: 'sample', ref: 'refs/heads/main', commit: COMMIT, recipe: RECIPE, exitStatus: 2, timedOut: false, reason: 'build exited with status 2',
      logSha256: 'e'.repeat(64), fingerprint: { sandbox: 'bwrap' }, builderId: 'b', finishedOn: '2026-01-01T00:00:00Z', log: { seq: 0, prev: null }
    }), key)
    expect(M.decodeEnvelope(signed.envelope).info).toMatchObject({ kind: 'failure', reason: 'build exited with status 2', exitStatus: 2, fingerprint: { sandbox: 'bwrap' }, logSha256: 'e'.repeat(64) })
    expect(M.decodeEnvelope(null).ok).toBe(false)
    expect(M.decodeEnvelope({ payloadType: 'x', payload: 'not base64!', signatures: [] })).toMatchObject({ ok: false, error: 'payload is not standard base64' })
    expect(M.decodeEnvelope({ payloadType: 'x', payload: btoa('[1]'), signatures: [] })).toMatchObject({ ok: false, error: 'payload is not a JSON object' })
  })
})

describe('display escaping', () => {
  it('escapes exactly what core escapes, for every code point of the Basic Multilingual Plane', () => {
    expect(M.UNSAFE_DISPLAY_CHAR.source).toBe(UNSAFE_DISPLAY_CHAR.source)
    for (let cp = 0; cp <= 0xffff; cp++) {
      if (cp >= 0xd800 && cp <= 0xdfff) continue
      const c = `a${String.fromCharCode(cp)}b`
      if (M.displayText(c) !== escapeForDisplay(c)) expect(`U+${cp.toString(16)}: ${M.displayText(c)}`).toBe(escapeForDisplay(c))
      if (M.displayText(c, true) !== escapeForDisplay(c, { keepLayout: true })) expect(`U+${cp.toString(16)} (layout kept): ${M.displayText(c, true)}`).toBe(escapeForDisplay(c, { keepLayout: true }))
    }
    expect(M.displayText('report\u202eexe.txt \u009b2J')).toBe('report\\u202eexe.txt \\u009b2J')
  })
})

describe('decision views', () => {
  const D = (c: string): string => c.repeat(64)
  const cell = (builder: string, result: string, narSha256?: string): Record<string, unknown> => ({ builder, org: `${builder}-org`, result, ...(narSha256 !== undefined ? { narSha256 } : {}) })

  it('sees a disagreement only on an untrusted commit with two different signed results', () => {
    expect(M.hasDisagreement({ status: 'pending', builders: [cell('a', 'voted', D('1')), cell('b', 'voted', D('2'))] })).toBe(true)
    expect(M.hasDisagreement({ status: 'pending', builders: [cell('a', 'voted', D('1')), cell('b', 'voted', D('1'))] })).toBe(false)
    expect(M.hasDisagreement({ status: 'trusted', builders: [cell('a', 'agrees', D('1')), cell('b', 'dissents', D('2'))] })).toBe(false)
    expect(M.hasDisagreement({ status: 'pending', disagreement: true, builders: [] })).toBe(true)
    expect(M.hasDisagreement({ status: 'pending', builders: [cell('a', 'voted', D('1')), cell('m', 'equivocated', D('2'))] })).toBe(false)
  })

  it('drops the digest the row already shows from the summary', () => {
    expect(M.summaryText(`trusted: ${D('a')} by 2 of 3 organizations (threshold 2)`, D('a'))).toBe('by 2 of 3 organizations (threshold 2)')
    expect(M.summaryText(`${D('a')} by 2 of 3 organizations (threshold 2); 1 dissenting builder: m`, D('a'))).toBe('by 2 of 3 organizations (threshold 2); 1 dissenting builder: m')
    expect(M.summaryText('pending: no counted result yet', null)).toBe('pending: no counted result yet')
    expect(M.summaryText(undefined, D('a'))).toBe('')
  })

  it('computes reproducibility per repository and per builder over the newest N commits', () => {
    const commits = [
      { status: 'pending', builders: [cell('a', 'voted', D('1'))] },
      { status: 'trusted', builders: [cell('a', 'agrees'), cell('b', 'agrees'), cell('m', 'dissents', D('9'))] },
      { status: 'failed', builders: [cell('a', 'failed'), cell('b', 'failed')] },
      { status: 'trusted', builders: [cell('a', 'agrees'), cell('b', 'failed'), cell('m', 'equivocated')] },
      { status: 'disputed', builders: [cell('a', 'voted', D('1')), cell('m', 'voted', D('2'))] }
    ]
    const r = M.reproducibility(commits, 4)
    expect(r.repo).toEqual({ commits: 4, trusted: 2, disputed: 0, failed: 1, pending: 1, rate: 2 / 3 })
    const by = Object.fromEntries(r.builders.map((x: { builder: string }) => [x.builder, x]))
    expect(by.a).toMatchObject({ agrees: 2, answered: 2, rate: 1 })
    expect(by.b).toMatchObject({ agrees: 1, failed: 1, answered: 2, rate: 0.5 })
    expect(by.m).toMatchObject({ dissents: 1, equivocated: 1, answered: 1, rate: 0 })
    expect(M.formatRate(by.b.rate, 1, 2)).toBe('50% (1 of 2)')
    expect(M.formatRate(null, 0, 0)).toBe('—')
    expect(M.reproducibility([], 10).repo.rate).toBeNull()
  })

  it("says whether a builder's newest failure is final or will be retried", () => {
    expect(M.failureState({ attempt: 2, final: true })).toBe('attempt 2, final')
    expect(M.failureState({ attempt: 1, final: false })).toBe('attempt 1, will retry')
    // a v1 failure (no attempt, no final) or a hostile value: attempt 1, not final
    expect(M.failureState({})).toBe('attempt 1, will retry')
    expect(M.failureState({ attempt: '<b>9</b>', final: 'yes' })).toBe('attempt 1, will retry')
  })

  it('lines results up side by side without a reference: only paths not the same in all', () => {
    const a = [{ path: 'a', type: 'file', sha256: D('1'), size: 1 }, { path: 'b', type: 'file', sha256: D('2') }, { path: 'l', type: 'symlink', target: 'a' }]
    const b = [{ path: 'a', type: 'file', sha256: D('1') }, { path: 'b', type: 'file', sha256: D('3') }, { path: 'c', type: 'dir' }, { path: 'l', type: 'symlink', target: 'a' }]
    const rows = M.sideBySide([a, b])
    expect(rows.map((r: { path: string }) => r.path)).toEqual(['b', 'c'])
    expect(rows[1].entries[0]).toBeUndefined()
    // Symmetric: neither list is the base.
    expect(M.sideBySide([b, a]).map((r: { path: string }) => r.path)).toEqual(['b', 'c'])
  })

  it('reads git metadata only as strings, cut to a bounded length', () => {
    expect(M.gitInfo({ subject: 'fix', author: 'A <a@x>', date: '2026-01-01', extra: 1 })).toEqual({ subject: 'fix', author: 'A <a@x>', date: '2026-01-01' })
    expect(M.gitInfo({ subject: 5 })).toBeUndefined()
    expect(M.gitInfo(undefined)).toBeUndefined()
    expect(M.gitInfo({ subject: 'x'.repeat(400) }).subject).toHaveLength(301)
  })
})

describe('routes', () => {
  it('accepts the three pages and validates their parameters', () => {
    expect(M.parseRoute('')).toEqual({ view: 'home' })
    expect(M.parseRoute('#/')).toEqual({ view: 'home' })
    expect(M.parseRoute('#/repo/sample')).toEqual({ view: 'repo', repoId: 'sample' })
    expect(M.parseRoute(`#/repo/sample/commit/${COMMIT}`)).toEqual({ view: 'commit', repoId: 'sample', commit: COMMIT })
    expect(M.parseRoute(`#/repo/sample/commit/${'0'.repeat(64)}`).view).toBe('commit')
    for (const bad of ['#/repo/%3Cimg%20src%3Dx%3E', '#/repo/Sample', '#/repo/../x', '#/repo/%E0%A4%A', `#/repo/sample/commit/${'A'.repeat(40)}`, '#/repo/sample/commit/abc', '#/repo/sample/x/y', '#javascript:alert(1)', '#/admin']) {
      expect(M.parseRoute(bad).view, bad).toBe('invalid')
    }
    expect(M.repoHref('sample')).toBe('#/repo/sample')
    expect(M.commitHref('sample', COMMIT)).toBe(`#/repo/sample/commit/${COMMIT}`)
  })
})

describe('file lists', () => {
  const list = (files: unknown[]): Uint8Array => new TextEncoder().encode(JSON.stringify({ version: 1, files }))

  it('parses a file list and drops malformed entries', () => {
    const files = M.parseFileList(list([{ path: 'a', type: 'file', size: 1, sha256: 'x' }, { path: 'l', type: 'symlink', target: 'a' }, { path: 3, type: 'file' }, { path: 'd', type: 'socket' }]))
    expect(files).toEqual([{ path: 'a', type: 'file', size: 1, sha256: 'x' }, { path: 'l', type: 'symlink', target: 'a' }])
    expect(() => M.parseFileList(new TextEncoder().encode('{"version":2,"files":[]}'))).toThrow(/version/)
    expect(() => M.parseFileList(new Uint8Array([0xff]))).toThrow(/UTF-8/)
  })

  it('lists added, removed and changed files between two results', () => {
    const base = [
      { path: 'BUILDINFO', type: 'file', size: 10, sha256: '1' },
      { path: 'app.js', type: 'file', size: 5, sha256: '2' },
      { path: 'bin', type: 'file', size: 5, sha256: '3', executable: true },
      { path: 'gone', type: 'file', size: 1, sha256: '4' },
      { path: 'link', type: 'symlink', target: 'app.js' }
    ]
    const other = [
      { path: 'BUILDINFO', type: 'file', size: 50, sha256: '9' },
      { path: 'app.js', type: 'file', size: 5, sha256: '2' },
      { path: 'bin', type: 'file', size: 5, sha256: '3' },
      { path: 'link', type: 'symlink', target: 'gone' },
      { path: 'new', type: 'dir' }
    ]
    expect(M.diffFiles(base, other).map((c: { change: string, path: string, differs: string[] }) => [c.change, c.path, c.differs.join()])).toEqual([
      ['changed', 'BUILDINFO', 'content'],
      ['changed', 'bin', 'executable'],
      ['removed', 'gone', ''],
      ['changed', 'link', 'target'],
      ['added', 'new', '']
    ])
    // A full list compared with a subjects-only list (no sizes): only hashes count.
    expect(M.diffFiles(M.topLevelFiles(base), [{ path: 'BUILDINFO', type: 'file', sha256: '1' }, { path: 'app.js', type: 'file', sha256: '2' }, { path: 'bin', type: 'file', sha256: '3' }, { path: 'gone', type: 'file', sha256: '4' }])).toEqual([])
  })

  it('skips the commit subject and OCI image subjects when reading files from subjects', () => {
    expect(M.filesFromSubjects([
      { name: `sample@${COMMIT}`, digest: { narSha256: 'n' } },
      { name: 'app.js', digest: { sha256: 'h' } },
      { name: 'sample:latest', digest: { sha256: 'm' }, mediaType: 'application/vnd.oci.image.manifest.v1+json' }
    ])).toEqual([{ path: 'app.js', type: 'file', sha256: 'h' }])
  })
})

describe('fingerprints', () => {
  it('flattens nested fields and marks the ones that differ', () => {
    const cmp = M.compareFingerprints([
      { builder: 'alpha', fingerprint: { os: 'Debian 12', cpuModel: 'EPYC', tools: { git: '2.39' } } },
      { builder: 'beta', fingerprint: { os: 'Debian 12', cpuModel: 'Xeon', tools: { git: '2.39', make: '4.3' } } }
    ])
    expect(cmp.builders).toEqual(['alpha', 'beta'])
    expect(cmp.fields).toEqual([
      { key: 'cpuModel', values: ['EPYC', 'Xeon'], differs: true },
      { key: 'os', values: ['Debian 12', 'Debian 12'], differs: false },
      { key: 'tools.git', values: ['2.39', '2.39'], differs: false },
      { key: 'tools.make', values: ['', '4.3'], differs: true }
    ])
    expect(cmp.differing).toBe(2)
  })
})

describe('the assets keep to the CSP and never parse strings as markup', () => {
  const read = (f: string): string => readFileSync(join(ASSETS, f), 'utf8')

  it('has no HTML-parsing sinks, eval or inline styles in the scripts', () => {
    for (const f of readdirSync(ASSETS).filter(f => f.endsWith('.js'))) {
      const src = read(f).replace(/^\s*\/\/.*$/gm, '')
      expect(src, f).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\s*\(|new Function|setAttribute\(\s*['"](style|on)|\.style\.|javascript:/)
    }
  })

  it('has no inline script, style block or style attribute in the page', () => {
    const html = read('index.html')
    expect(html).not.toMatch(/<style|style=|\son[a-z]+=/i)
    for (const m of html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)) {
      expect(m[1]).toMatch(/src="\/ui\/[a-z-]+\.js"/)
      expect(m[2].trim()).toBe('')
    }
  })

  it('is served by the node as JavaScript, CSS and HTML', () => {
    expect(webAsset('/')?.contentType).toMatch(/^text\/html/)
    expect(webAsset('/ui/app.js')?.contentType).toMatch(/^text\/javascript/)
    expect(webAsset('/ui/model.js')?.contentType).toMatch(/^text\/javascript/)
    expect(webAsset('/ui/style.css')?.contentType).toMatch(/^text\/css/)
    expect(bytesToHex(createHash('sha256').update(webAsset('/ui/model.js')!.body).digest())).toBe(createHash('sha256').update(read('model.js')).digest('hex'))
  })
})

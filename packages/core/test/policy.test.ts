import { describe, it, expect } from 'vitest'
import { parsePolicy, policyDigestOf, canonicalize, sha256Hex } from '../src/index.js'
import { builder, RECIPE } from './fixtures.js'

const a = builder('a', 'org-a', 1)
const b = builder('b', 'org-b', 2)
const c = builder('c', 'org-c', 3)

function doc (over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    version: 1,
    builders: [a, b, c].map(x => ({ name: x.name, org: x.org, keys: [{ publicKey: x.key.publicKeyHex }] })),
    repositories: [{ id: 'hello', url: '/srv/hello.git', branches: ['main'], recipe: RECIPE }],
    quorum: { threshold: 2 },
    ...over
  }
}

/** URLs git would turn into command execution or option injection (issue 14 item 11), and plain http. */
const HOSTILE_URLS = ['ext::sh -c touch% /tmp/pwned', 'fd::3', '--upload-pack=touch /tmp/pwned', '-oProxyCommand=touch /tmp/x',
  'ssh://-oProxyCommand=touch%20/tmp/pwned/a', 'host:-oProxyCommand=x', '-x@host:repo', 'http://example.org/a.git', 'ftp://example.org/a', 'a\nb']

describe('parsePolicy', () => {
  it('indexes keys by keyid, counts organizations and defaults the threshold to a majority', () => {
    const p = parsePolicy({ ...doc(), quorum: {} }, 'policy.json')
    expect(p.orgs).toEqual(['org-a', 'org-b', 'org-c'])
    expect(p.threshold).toBe(2)
    expect(p.mode).toBe('majority')
    expect(p.keys.get(a.key.keyid)?.builder).toBe('a')
    expect(p.digest).toBe(sha256Hex(canonicalize(doc({ quorum: {} }))))
    expect(policyDigestOf(doc())).not.toBe(p.digest)
  })

  it('enforces orgs/2 < threshold <= orgs with a message that names the field and the fix', () => {
    expect(() => parsePolicy(doc({ quorum: { threshold: 1 } }), 'policy.json')).toThrow(/policy.json: quorum.threshold: 1 is not more than half of the 3 organizations.*use at least 2/)
    expect(() => parsePolicy(doc({ quorum: { threshold: 4 } }), 'policy.json')).toThrow(/quorum.threshold: 4 exceeds the 3 organizations listed; lower it or add builders/)
    expect(parsePolicy(doc({ quorum: { threshold: 3, mode: 'unanimous' } })).threshold).toBe(3)
  })

  it('names the bad field for malformed builders, keys and repositories', () => {
    const bad = (d: Record<string, unknown>): string => { try { parsePolicy(d, 'p.json'); return 'ok' } catch (e) { return (e as Error).message } }
    expect(bad({ ...doc(), version: 2 })).toMatch(/p.json: version: must be 1/)
    expect(bad(doc({ builders: [{ name: 'a', org: 'x', keys: [{ publicKey: 'abc' }] }] }))).toMatch(/builders\[0\]\.keys\[0\]\.publicKey/)
    expect(bad(doc({ builders: [{ name: 'a', org: 'x', keys: [{ publicKey: a.key.publicKeyHex }] }, { name: 'b', org: 'y', keys: [{ publicKey: a.key.publicKeyHex }] }] }))).toMatch(/already listed for builder "a"/)
    expect(bad(doc({ builders: [{ name: 'a', org: 'x', keys: [{ publicKey: a.key.publicKeyHex }] }, { name: 'a', org: 'y', keys: [{ publicKey: b.key.publicKeyHex }] }] }))).toMatch(/builders\[1\]\.name: "a" is listed twice/)
    expect(bad(doc({ repositories: [{ id: 'https://x', url: 'u', branches: ['main'], recipe: RECIPE }] }))).toMatch(/repositories\[0\]\.id/)
    expect(bad(doc({ repositories: [{ id: 'x', url: 'u', branches: [], recipe: RECIPE }] }))).toMatch(/repositories\[0\]\.branches/)
    expect(bad(doc({ repositories: [{ id: 'x', url: 'u', branches: ['main'] }] }))).toMatch(/either "recipe".*or "recipeFromRepo"/)
    for (const url of HOSTILE_URLS) {
      expect(bad(doc({ repositories: [{ id: 'x', url, branches: ['main'], recipe: RECIPE }] })), url).toMatch(/repositories\[0\]\.url: .* is not allowed: .*; use file:\/\/, https:\/\//)
    }
    for (const url of ['https://example.org/a.git', 'ssh://git@example.org/a.git', 'git@github.com:org/repo.git', '/srv/git/a.git', 'file:///srv/a.git']) {
      expect(() => parsePolicy(doc({ repositories: [{ id: 'x', url, branches: ['main'], recipe: RECIPE }] }), 'p.json'), url).not.toThrow()
    }
    // Credentials in a refused URL are never repeated in the error.
    expect(bad(doc({ repositories: [{ id: 'x', url: 'http://alice:hunter2@example.org/a.git', branches: ['main'], recipe: RECIPE }] }))).not.toContain('hunter2')
    expect(bad(doc({ repositories: [{ id: 'x', url: 'u', branches: ['main'], recipe: { ...RECIPE, output: '../etc' } }] }))).toMatch(/recipe.output.*leaves the checkout/)
    expect(bad(doc({ extra: 1 }))).toMatch(/extra: unknown field/)
    expect(bad(doc({ quorum: { mode: 'plurality' } }))).toMatch(/quorum.mode/)
  })
})

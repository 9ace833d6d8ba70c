import { describe, it, expect } from 'vitest'
import { md, term, renderMarkdown, renderText, type AuditFinding } from '../src/audit.js'

const hostile = 'evil\u001b[2J\n| <img src=x onerror=alert(1)> [link](http://x) `code` *b*'

function finding (): AuditFinding {
  return {
    repoId: 'hello',
    commit: 'a'.repeat(40),
    status: 'disputed',
    summary: 'disputed',
    trustedNarSha256: null,
    builds: [{ builder: hostile, org: hostile, narSha256: 'b'.repeat(64), resultKey: 'r', fileListSha256: 'c'.repeat(64), recipeDigest: 'd'.repeat(64), builderId: hostile, fingerprint: {} }],
    differences: [{ narSha256: 'e'.repeat(64), builders: [hostile], against: 'b'.repeat(64), diff: { added: [{ path: hostile, type: 'file', size: 1, sha256: 'f'.repeat(64) }], removed: [], changed: [] } }],
    fingerprintDifferences: [{ field: 'cpuModel', values: { a: hostile, b: 'x' } }],
    recipeMismatches: [],
    failures: [{ builder: 'a', org: 'o', envelopeId: 'e', reason: hostile, exitStatus: 1, timedOut: false }],
    conflictedOrgs: [],
    equivocations: [],
    uncounted: [],
    failureLogs: []
  }
}

describe('audit output escaping', () => {
  it('never lets a signer\'s string move the terminal or break a line', () => {
    expect(term(hostile)).not.toMatch(/[\u0000-\u001f]/)
    const text = renderText([finding()])
    expect(text).not.toContain('\u001b')
    expect(text.split('\n').every(line => !line.includes('\u001b'))).toBe(true)
  })

  it('never lets a signer\'s string become Markdown or HTML: no tags, links, table breaks or code spans', () => {
    expect(md('<b>|x|</b>')).toBe('\\<b\\>\\|x\\|\\</b\\>')
    const out = renderMarkdown([finding()])
    expect(out).not.toMatch(/(?<!\\)<img/)
    expect(out).toContain("\\<img")
    expect(out).not.toMatch(/[^\\]\[link\]/)
    // Every table row still has exactly its columns: the hostile "|" is escaped.
    for (const row of out.split('\n').filter(l => l.startsWith('| added'))) expect(row.split(/(?<!\\)\|/).length).toBe(6)
  })
})

describe('audit groups a builder\'s retries', () => {
  it('prints one failure line per builder with its attempts', async () => {
    const { groupFailures } = await import('../src/audit.js')
    const f = finding()
    f.failures = [
      { builder: 'b1', org: 'o', envelopeId: 'e1', reason: 'exit 1', exitStatus: 1, timedOut: false, attempt: 1, final: false, seq: 3 },
      { builder: 'b1', org: 'o', envelopeId: 'e2', reason: 'exit 2', exitStatus: 2, timedOut: false, attempt: 2, final: true, seq: 5 },
      { builder: 'c1', org: 'p', envelopeId: 'e3', reason: 'exit 1', exitStatus: 1, timedOut: false, attempt: 1, final: false, seq: 0 }
    ] as any
    expect(groupFailures(f.failures)).toEqual([
      { builder: 'b1', attempts: 'attempts 1, 2 (final)', reason: 'exit 2' },
      { builder: 'c1', attempts: 'attempt 1 (will retry)', reason: 'exit 1' }
    ])
    const text = renderText([f])
    expect(text.match(/failure: b1/g)).toHaveLength(1)
  })

  it('says where an administrator reopened a final failure (the final attempt signed again as not final)', async () => {
    const { groupFailures } = await import('../src/audit.js')
    const f = (attempt: number, final: boolean, seq: number, reason = 'mirror down'): any => ({ builder: 'a1', org: 'a', envelopeId: `e${seq}`, reason, exitStatus: 22, timedOut: false, attempt, final, seq })
    expect(groupFailures([f(1, true, 2), f(1, false, 3), f(2, true, 5), f(2, false, 6, 'rebuild requested by an administrator after the final failure of attempt 2: mirror down')])).toEqual([
      { builder: 'a1', attempts: 'attempts 1 (final), reopened by an administrator, 2 (final), reopened by an administrator (will retry)', reason: 'rebuild requested by an administrator after the final failure of attempt 2: mirror down' }
    ])
  })
})

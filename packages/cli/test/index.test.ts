import { describe, it, expect } from 'vitest'
import * as cli from '../src/index.js'

describe('@quorate/cli', () => {
  it('exports exactly its public API', () => {
    expect(Object.keys(cli).sort()).toEqual([
      'DEFAULT_TIMEOUT_MS', 'NodeHttpError', 'auditCommit', 'auditEvidence', 'diffoscopeCommit', 'findCommitRepository',
      'hasFindings', 'materializeOutput', 'nodeClient', 'renderJson', 'renderMarkdown', 'renderText', 'verifyCommit'
    ])
  })
})

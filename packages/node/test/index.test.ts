import { describe, it, expect } from 'vitest'
import * as node from '../src/index.js'

describe('@quorate/node', () => {
  it('exports exactly its public API', () => {
    expect(Object.keys(node).sort()).toEqual([
      'BACKUP_PARTS', 'Counter', 'EventBus', 'Histogram', 'MAX_ATTEMPTS', 'MalformedPathError', 'MetricsRegistry', 'NEW_KEY_MARKER', 'ROUTES',
      'assertPrivateFile', 'backupDataDir', 'buildJobs', 'collectNetworkMetrics', 'commitCandidates', 'commitLists', 'createLogger', 'createNodeMetrics',
      'createNotifier', 'createVerifyPool', 'dataDirLayout', 'decisions', 'defaultVerifyWorkers', 'escapeForTerminal', 'httpApi', 'ingest', 'initPeerKeyFile', 'latestTrusted',
      'loadBuilderKey', 'loadNodeConfig', 'loadPeerKey', 'loadPolicyFile', 'matchRoute', 'mirrorMoves', 'noticeMemory', 'openStoppedStore',
      'outputs', 'ownLog', 'ownLogRecovery', 'ownPreviousTip', 'prepareDataDir', 'publisher', 'readJsonFile', 'recentRefMoves', 'restoreDataDir', 'rotateBuilderKey', 'routePath', 'startNode',
      'webhookSignatureMatches', 'writePeerKeyFile'
    ])
  })

  it('builds and matches API paths from one route table, encoding parameters both ways', () => {
    expect(node.routePath('commits', { repo: 'a b/c' })).toBe('/v1/repos/a%20b%2Fc/commits')
    expect(node.routePath('latest', { repo: 'hello' }, { ref: 'refs/heads/main' })).toBe('/v1/repos/hello/latest?ref=refs%2Fheads%2Fmain')
    expect(node.matchRoute('/v1/repos/a%20b%2Fc/commits')).toEqual([{ name: 'commits', method: 'GET', params: { repo: 'a b/c' } }])
    expect(() => node.matchRoute('/v1/repos/%E0%A4%A/commits')).toThrow(node.MalformedPathError)
    expect(node.matchRoute('/v1/nothing')).toEqual([])
  })
})

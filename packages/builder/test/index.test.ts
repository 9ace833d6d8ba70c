import { describe, it, expect } from 'vitest'
import { createHash } from 'node:crypto'
import * as builder from '../src/index.js'
import { LogCapture } from '../src/index.js'

describe('@quorate/builder', () => {
  it('exports exactly its public API', () => {
    expect(Object.keys(builder).sort()).toEqual([
      'ALLOWED_GIT_SCHEMES', 'BUILD_PATH', 'BuildRootCache', 'DEFAULT_DENIED_RANGES', 'DEFAULT_FETCH_CACHE_MAX_AGE_DAYS',
      'DEFAULT_FETCH_CACHE_MAX_BYTES', 'DEFAULT_FETCH_NETWORK', 'DEFAULT_ROOT_BUILD_ID', 'FetchCache', 'FileListScanner', 'GitMirror', 'LogCapture', 'MAX_TOP_LEVEL_SUBJECTS', 'REPO_RECIPE_PATH', 'SANDBOX_HOME', 'SANDBOX_SRC',
      'assertRoomForBuild', 'buildWorker', 'bwrapArgs', 'checkCommit', 'checkGitUrl', 'detectSandbox', 'environmentFingerprint',
      'globToRegExp', 'hashNar', 'hashOutput', 'isNodeTrouble', 'nodeTrouble', 'ociArchitecture', 'packOciImage',
      'parseFetchCacheConfig', 'parseFetchNetworkPolicy', 'parseImageSpec', 'parseRootsConfig', 'prepareBuildArea', 'probeSandbox', 'readFileListEntries', 'readRepoRecipe', 'redactUrl', 'removeTree', 'resolveBuildUser',
      'runBuild', 'watcher'
    ])
  })

  it('keeps a bounded head and tail of a log and hashes all of it', () => {
    const log = new LogCapture(10)
    const parts = ['abc', 'defghijkl', 'mnop', 'q']
    for (const p of parts) log.push(Buffer.from(p))
    expect(log.result()).toEqual({
      head: 'abcde',
      tail: 'mnopq',
      totalBytes: 17,
      sha256: createHash('sha256').update(parts.join('')).digest('hex'),
      complete: false,
      kept: Buffer.from("abcde\n[quorate: 7 bytes of the log left out here; the recipe's maxLogBytes keeps the first and last 5 bytes]\nmnopq")
    })
    const short = new LogCapture(100)
    short.push('only this')
    expect(short.result()).toMatchObject({ head: 'only this', tail: 'only this', totalBytes: 9, complete: true, kept: Buffer.from('only this') })
    const exact = new LogCapture(10)
    for (const p of ['abcd', 'efghij']) exact.push(p)
    expect(exact.result()).toMatchObject({ complete: true, kept: Buffer.from('abcdefghij') })
    const big = new LogCapture(8)
    big.push('0123456789ABCDEF')
    expect(big.result()).toMatchObject({ head: '0123', tail: 'CDEF' })
  })
})

import { describe, expect, it } from 'vitest'
import * as network from '../src/index.js'

describe('@quorate/network exports', () => {
  it('pins the public surface', () => {
    expect(Object.keys(network).sort()).toEqual([
      'BLOB_PROTOCOL',
      'DEFAULT_BLOB_RANGE_BYTES',
      'DEFAULT_MAX_BLOB_BYTES',
      'DEFAULT_MAX_MESSAGE_BYTES',
      'LEGACY_WHOLE_BLOB_BYTES',
      'SYNC_PROTOCOL',
      'attestationTopic',
      'createPeerKey',
      'peerIdFromPeerKey',
      'repoIdFromTopic',
      'startNetwork'
    ])
  })

  it('names topics and the sync protocol as DESIGN.md does', () => {
    expect(network.attestationTopic('hello')).toBe('/quorate/1/att/hello')
    expect(network.repoIdFromTopic('/quorate/1/att/hello')).toBe('hello')
    expect(network.repoIdFromTopic('/other/hello')).toBeUndefined()
    expect(network.SYNC_PROTOCOL).toBe('/quorate/sync/1.0.0')
    expect(network.DEFAULT_MAX_MESSAGE_BYTES).toBe(65536)
    expect(network.BLOB_PROTOCOL).toBe('/quorate/blob/1.0.0')
    expect(network.DEFAULT_MAX_BLOB_BYTES).toBe(1024 * 1024 * 1024)
    expect(network.LEGACY_WHOLE_BLOB_BYTES).toBe(64 * 1024 * 1024)
    expect(network.DEFAULT_BLOB_RANGE_BYTES).toBe(4 * 1024 * 1024)
  })

  it('installs Promise.withResolvers (libp2p 3 needs it on Node 20)', () => {
    expect(typeof Promise.withResolvers).toBe('function')
  })
})

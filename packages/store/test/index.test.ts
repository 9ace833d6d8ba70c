import { describe, it, expect } from 'vitest'
import * as store from '../src/index.js'

describe('@quorate/store', () => {
  it('exports exactly its public API', () => {
    expect(Object.keys(store).sort()).toEqual([
      'SMALL_BLOB_BYTES', 'STORE_FORMAT', 'Store'
    ])
  })
})

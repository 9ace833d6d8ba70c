import { describe, it, expect } from 'vitest'
import * as web from '../src/index.js'

describe('@quorate/web', () => {
  it('exports exactly its public API', () => {
    expect(Object.keys(web).sort()).toEqual(['WEB_SECURITY_HEADERS', 'webAsset'])
  })

  it('serves the dashboard page and nothing outside its assets', () => {
    expect(web.webAsset('/')?.contentType).toMatch(/^text\/html/)
    expect(web.webAsset('/../package.json')).toBeUndefined()
    expect(web.webAsset('/v1/status')).toBeUndefined()
  })
})

import { describe, it, expect } from 'vitest'
import { escapeForDisplay, escapeJsonText, stringifyForDisplay, escapeMarkdown, hasUnsafeDisplayChars } from '../src/index.js'

const BIDI = ['\u061c', '\u200e', '\u200f', '\u202a', '\u202b', '\u202c', '\u202d', '\u202e', '\u2066', '\u2067', '\u2068', '\u2069']

describe('escapeForDisplay', () => {
  it('escapes every bidirectional control as a visible \\uXXXX', () => {
    for (const c of BIDI) expect(escapeForDisplay(`a${c}b`)).toBe(`a\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}b`)
    // The Trojan-Source file name: reads "txt.exe" reversed when shown raw.
    expect(escapeForDisplay('report\u202eexe.txt')).toBe('report\\u202eexe.txt')
  })

  it('escapes C0, DEL and C1 controls (ESC, CSI U+009B) and the line/paragraph separators', () => {
    for (let cp = 0; cp < 0x20; cp++) expect(escapeForDisplay(String.fromCharCode(cp))).toBe(`\\u${cp.toString(16).padStart(4, '0')}`)
    for (let cp = 0x7f; cp <= 0x9f; cp++) expect(escapeForDisplay(String.fromCharCode(cp))).toBe(`\\u${cp.toString(16).padStart(4, '0')}`)
    expect(escapeForDisplay('\u009b2J\u001b[31m')).toBe('\\u009b2J\\u001b[31m')
    expect(escapeForDisplay('\u2028\u2029')).toBe('\\u2028\\u2029')
  })

  it('leaves printable text of every script alone, including right-to-left letters and emoji', () => {
    const fine = 'gcc 12.2 · Ünïcödé · שלום · مرحبا · 漢字 · 🚀 · zero\u00a0width-less'
    expect(escapeForDisplay(fine)).toBe(fine)
    expect(hasUnsafeDisplayChars(fine)).toBe(false)
    expect(hasUnsafeDisplayChars('x\u202ey')).toBe(true)
    expect(hasUnsafeDisplayChars('x\u202ey')).toBe(true) // no regex lastIndex state between calls
  })

  it('keeps line feeds and tabs only when asked (multi-line blocks laid out by the caller)', () => {
    expect(escapeForDisplay('a\n\tb\r\u202e', { keepLayout: true })).toBe('a\n\tb\\u000d\\u202e')
    expect(escapeForDisplay('a\n\tb')).toBe('a\\u000a\\u0009b')
  })
})

describe('JSON for display', () => {
  it('escapes what JSON.stringify writes raw and still parses to the same value', () => {
    const value = { builder: 'evil\u202eci', reason: 'csi \u009b2J and \u2066iso\u2069', nested: ['\u200f', 'ok'] }
    for (const indent of [undefined, 2]) {
      const text = stringifyForDisplay(value, indent)
      expect(hasUnsafeDisplayChars(text.replace(/\n/g, ''))).toBe(false)
      expect(text).toContain('evil\\u202eci')
      expect(text).toContain('\\u009b2J')
      expect(JSON.parse(text)).toEqual(value)
    }
    expect(JSON.parse(escapeJsonText(JSON.stringify('\\u202e literal')))).toBe('\\u202e literal')
  })
})

describe('escapeMarkdown', () => {
  it('escapes Markdown and HTML syntax after the control characters', () => {
    expect(escapeMarkdown('<b>|x|</b>')).toBe('\\<b\\>\\|x\\|\\</b\\>')
    expect(escapeMarkdown('a\u202eb')).toBe('a\\\\u202eb')
  })
})

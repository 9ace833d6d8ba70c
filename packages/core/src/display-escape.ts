/**
 * Escaping of strings that came from a signer (builder names in envelopes, failure reasons,
 * file paths, fingerprint values) before they are shown anywhere: a terminal, a log line,
 * Markdown or a web page.
 *
 * The characters escaped here are the ones that change what a reader sees without being
 * visible themselves: C0 and C1 controls (ESC and CSI, U+009B, move a terminal's cursor or
 * clear its screen; CR and LF forge log lines), the bidirectional controls (U+202E turns
 * "exe.txt" into what reads as "txt.exe"; Trojan Source, CVE-2021-42574), and the Unicode
 * line and paragraph separators. Each becomes a visible `\uXXXX` escape.
 *
 * One rule for every place a signer's string is shown: the dashboard (packages/web/assets/model.js)
 * carries a copy of UNSAFE_DISPLAY_CHAR that a test keeps identical to this one.
 */

/**
 * C0 controls and DEL, C1 controls, the Arabic letter mark, LRM/RLM, the bidi embeddings and
 * overrides (LRE RLE PDF LRO RLO), the isolates (LRI RLI FSI PDI), and the line/paragraph separators.
 */
// eslint-disable-next-line no-control-regex
export const UNSAFE_DISPLAY_CHAR = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/g

// eslint-disable-next-line no-control-regex
const UNSAFE_EXCEPT_LAYOUT = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/g

const escapeChar = (c: string): string => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`

export interface DisplayEscapeOptions {
  /**
   * Keep line feeds and tabs (for multi-line text the caller lays out itself: a pretty-printed
   * JSON block, a whole report). A signer's single-line field never gets this.
   */
  keepLayout?: boolean
}

/** Whether a string holds a character escapeForDisplay would escape. */
export function hasUnsafeDisplayChars (s: string): boolean {
  UNSAFE_DISPLAY_CHAR.lastIndex = 0
  const found = UNSAFE_DISPLAY_CHAR.test(s)
  UNSAFE_DISPLAY_CHAR.lastIndex = 0
  return found
}

/** A signer's string made safe to show: every control, bidi control and separator becomes `\uXXXX`. */
export function escapeForDisplay (s: unknown, opts: DisplayEscapeOptions = {}): string {
  return String(s).replace(opts.keepLayout === true ? UNSAFE_EXCEPT_LAYOUT : UNSAFE_DISPLAY_CHAR, escapeChar)
}

/**
 * JSON text (as JSON.stringify writes it) with the same characters escaped. JSON.stringify
 * escapes C0 controls inside strings but writes C1 and bidi controls raw; outside strings only
 * layout whitespace occurs, which is kept. The result parses to the same value.
 */
export function escapeJsonText (json: string): string {
  return escapeForDisplay(json, { keepLayout: true })
}

/** JSON.stringify for output a person or a log reader sees: the same value, no raw control or bidi character. */
export function stringifyForDisplay (value: unknown, indent?: number): string {
  return escapeJsonText(JSON.stringify(value, null, indent) ?? 'null')
}

/** For Markdown text and table cells: escapes as escapeForDisplay, then every character Markdown or HTML gives meaning. */
export function escapeMarkdown (s: unknown): string {
  return escapeForDisplay(s).replace(/[\\`*_{}[\]()#+!|<>&~-]/g, c => `\\${c}`)
}

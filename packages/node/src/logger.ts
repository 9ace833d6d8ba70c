/** Structured logging: one JSON object per line with --log-format json, readable text otherwise. */
import { escapeForDisplay, stringifyForDisplay } from '@quorate/core'

export type LogFormat = 'text' | 'json'
export type LogLevel = 'debug' | 'info' | 'warn' | 'error'

export interface Logger {
  log: (level: LogLevel, event: string, fields?: Record<string, unknown>) => void
  info: (event: string, fields?: Record<string, unknown>) => void
  warn: (event: string, fields?: Record<string, unknown>) => void
  error: (event: string, fields?: Record<string, unknown>) => void
  debug: (event: string, fields?: Record<string, unknown>) => void
}

/**
 * Escapes control and bidi characters (core's escapeForDisplay) so a signer-chosen string cannot
 * forge log lines, move the terminal cursor or reorder what a reader sees.
 */
export function escapeForTerminal (s: string): string {
  return escapeForDisplay(s)
}

function formatValue (v: unknown): string {
  if (typeof v === 'string') return /[\s"=]/.test(v) || v === '' ? stringifyForDisplay(v) : escapeForDisplay(v)
  if (typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined) return String(v)
  return escapeForDisplay(JSON.stringify(v))
}

export function createLogger (opts: { format: LogFormat, name?: string, debug?: boolean, write?: (line: string) => void }): Logger {
  const write = opts.write ?? ((line: string) => process.stderr.write(line + '\n'))
  const log = (level: LogLevel, event: string, fields: Record<string, unknown> = {}): void => {
    if (level === 'debug' && opts.debug !== true) return
    const time = new Date().toISOString()
    if (opts.format === 'json') {
      write(stringifyForDisplay({ time, level, ...(opts.name !== undefined ? { node: opts.name } : {}), event, ...fields }))
    } else {
      const kv = Object.entries(fields).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${formatValue(v)}`).join(' ')
      write(`${time.slice(11, 23)} ${level.toUpperCase().padEnd(5)} ${opts.name !== undefined ? `[${escapeForDisplay(opts.name)}] ` : ''}${escapeForDisplay(event)}${kv === '' ? '' : ' ' + kv}`)
    }
  }
  return {
    log,
    info: (e, f) => log('info', e, f),
    warn: (e, f) => log('warn', e, f),
    error: (e, f) => log('error', e, f),
    debug: (e, f) => log('debug', e, f)
  }
}

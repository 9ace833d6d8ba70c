/** Structured logging: one JSON object per line with --log-format json, readable text otherwise. */
export type LogFormat = 'text' | 'json'
export type LogLevel = 'debug' | 'info' | 'warn' | 'error'

export interface Logger {
  log: (level: LogLevel, event: string, fields?: Record<string, unknown>) => void
  info: (event: string, fields?: Record<string, unknown>) => void
  warn: (event: string, fields?: Record<string, unknown>) => void
  error: (event: string, fields?: Record<string, unknown>) => void
  debug: (event: string, fields?: Record<string, unknown>) => void
}

/** Escapes control characters so a signer-chosen string cannot forge log lines or move the terminal cursor. */
export function escapeForTerminal (s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, c => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

function formatValue (v: unknown): string {
  if (typeof v === 'string') return /[\s"=]/.test(v) || v === '' ? JSON.stringify(v) : escapeForTerminal(v)
  if (typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined) return String(v)
  return escapeForTerminal(JSON.stringify(v))
}

export function createLogger (opts: { format: LogFormat, name?: string, debug?: boolean, write?: (line: string) => void }): Logger {
  const write = opts.write ?? ((line: string) => process.stderr.write(line + '\n'))
  const log = (level: LogLevel, event: string, fields: Record<string, unknown> = {}): void => {
    if (level === 'debug' && opts.debug !== true) return
    const time = new Date().toISOString()
    if (opts.format === 'json') {
      write(JSON.stringify({ time, level, ...(opts.name !== undefined ? { node: opts.name } : {}), event, ...fields }))
    } else {
      const kv = Object.entries(fields).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${formatValue(v)}`).join(' ')
      write(`${time.slice(11, 23)} ${level.toUpperCase().padEnd(5)} ${opts.name !== undefined ? `[${opts.name}] ` : ''}${event}${kv === '' ? '' : ' ' + kv}`)
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

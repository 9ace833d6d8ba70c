/**
 * One error class for all of Quorate. Callers match on `err.code`; the message says
 * what was wrong and what to do about it.
 */
export type QuorateErrorCode =
  | 'USAGE'
  | 'CONFIG_INVALID'
  | 'POLICY_INVALID'
  | 'KEY_INVALID'
  | 'KEY_PERMISSIONS'
  | 'CANONICAL_JSON'
  | 'ENVELOPE_MALFORMED'
  | 'SIGNATURE_INVALID'
  | 'STATEMENT_INVALID'
  | 'RECIPE_INVALID'
  | 'GIT_URL_REJECTED'
  | 'GIT_FAILED'
  | 'BUILD_FAILED'
  | 'BUILD_TIMEOUT'
  | 'SANDBOX_UNAVAILABLE'
  | 'OUTPUT_INVALID'
  | 'STORE_LOCKED'
  | 'STORE_FAILED'
  | 'NETWORK_FAILED'
  | 'HTTP_FAILED'
  | 'NOT_FOUND'
  | 'ROOT_UNAVAILABLE'
  /** The node's own trouble (disk full, I/O error): never the build's fault; the job waits and runs again. */
  | 'NODE_TROUBLE'

export class QuorateError extends Error {
  readonly code: QuorateErrorCode
  readonly fields: Record<string, unknown>

  constructor (code: QuorateErrorCode, message: string, fields: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'QuorateError'
    this.code = code
    this.fields = fields
  }
}

export function isQuorateError (err: unknown, code?: QuorateErrorCode): err is QuorateError {
  return err instanceof QuorateError && (code === undefined || err.code === code)
}

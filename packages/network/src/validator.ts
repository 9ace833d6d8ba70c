import { errorMessage } from './errors.js'
import type { IncomingMessage, NetworkLogger, Verdict } from './types.js'

const VERDICTS = new Set<Verdict>(['accept', 'reject', 'ignore'])

export interface ValidatorInit {
  /** The node's validator (NetworkInit.validate). */
  validate: (msg: IncomingMessage) => Promise<Verdict>
  log: NetworkLogger
}

export interface ValidatorComponents {
  /** Called with the peer that handed us an accepted message (sync-slots.ts keeps room for such peers). */
  onAccepted?: (peerId: string) => void
}

/**
 * The one way gossip and sync hand a message to the node's `validate`: counts validations in
 * flight (gossip sheds load past a cap), turns a throw or a bad verdict into 'ignore' (a storage
 * failure is not the sender's fault), and reports who delivered something valid.
 */
export interface Validator {
  run: (msg: IncomingMessage) => Promise<Verdict>
  readonly inFlight: number
}

export function validator (init: ValidatorInit, components: ValidatorComponents = {}): Validator {
  const { validate, log } = init
  let inFlight = 0
  return {
    get inFlight () { return inFlight },
    async run (msg) {
      inFlight++
      try {
        const verdict = await validate(msg)
        if (!VERDICTS.has(verdict)) {
          log('validate-bad-verdict', { repoId: msg.repoId, from: msg.from, via: msg.via, verdict: String(verdict) })
          return 'ignore'
        }
        if (verdict === 'accept') components.onAccepted?.(msg.from)
        return verdict
      } catch (err) {
        log('validate-failed', { repoId: msg.repoId, from: msg.from, via: msg.via, error: errorMessage(err) })
        return 'ignore'
      } finally {
        inFlight--
      }
    }
  }
}

import { existsSync } from 'node:fs'
import { QuorateError, type BuilderKeyPair, type Policy } from '@quorate/core'
import { probeSandbox, resolveBuildUser, type BuildUser } from '@quorate/builder'
import type { NodeConfig } from './config.js'
import type { Logger } from './logger.js'
import { sandboxFailureHint } from './sandbox-hint.js'

/**
 * Checks what must hold before anything starts: a usable key, a sandbox that works (or was
 * switched off explicitly). Returns the user builds run as (never host uid 0).
 */
export async function preflight (config: NodeConfig, policy: Policy, key: BuilderKeyPair, logger: Logger): Promise<BuildUser> {
  const member = policy.keys.get(key.keyid)
  if (member === undefined) {
    logger.warn('key not in policy', { keyid: key.keyid, hint: 'this node verifies and relays but its attestations will not count until the network adds its public key to the policy' })
  } else if (member.revoked) {
    throw new QuorateError('KEY_INVALID', `${config.builderKeyFile}: this key (${key.keyid}) is revoked in ${config.policyFile}; use the builder's current key`)
  }
  // A root node builds as an unprivileged user of its own (never host uid 0), in a directory that user can reach.
  const buildUser = resolveBuildUser(config.sandboxUser)
  if (config.sandbox === 'bwrap') {
    const probe = await probeSandbox(buildUser)
    if (typeof probe === 'string') {
      const hint = sandboxFailureHint(probe, existsSync('/.dockerenv') || existsSync('/run/.containerenv'))
      throw new QuorateError('SANDBOX_UNAVAILABLE', `${config.file}: sandbox is "bwrap" but ${probe}${hint !== undefined ? `; ${hint}` : ''}; or set "sandbox": "none" to build without isolation`)
    }
  } else {
    logger.warn('sandbox disabled', { sandbox: 'none', hint: 'builds run without isolation and can read this node\'s files; attestations record sandbox "none"' })
  }
  if (config.faultInjection?.tamperOutput === true) logger.warn('fault injection', { tamperOutput: true, hint: 'this node simulates a compromised CI: it alters its build outputs' })
  return buildUser
}


// The URL rule itself lives in core (one validation for the policy parser and the builder).
import { redactUrl } from '@quorate/core'

export { checkGitUrl, redactUrl, ALLOWED_GIT_SCHEMES } from '@quorate/core'

/** Removes the URL's credentials and any given secrets from text that git printed. */
export function redactText (text: string, url: string, secrets: readonly string[]): string {
  let out = text.split(url).join(redactUrl(url))
  for (const s of secrets) if (s.length > 0) out = out.split(s).join('***')
  return out.replace(/([A-Za-z][A-Za-z0-9+.-]*:\/\/)[^@/\s]*:[^@/\s]*@/g, '$1***@')
}

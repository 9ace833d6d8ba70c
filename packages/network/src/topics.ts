/** Network-wide repository id (DESIGN.md "Names"); never a URL. */
export const REPO_ID_PATTERN = /^[a-z0-9][a-z0-9._-]{0,63}$/

const TOPIC_PREFIX = '/quorate/1/att/'

/** The gossip topic of one repository's attestations. */
export function attestationTopic (repoId: string): string {
  return `${TOPIC_PREFIX}${repoId}`
}

/** The repository id of an attestation topic, or undefined for any other topic. */
export function repoIdFromTopic (topic: string): string | undefined {
  if (!topic.startsWith(TOPIC_PREFIX)) return undefined
  const repoId = topic.slice(TOPIC_PREFIX.length)
  return REPO_ID_PATTERN.test(repoId) ? repoId : undefined
}

export function isRepoId (value: unknown): value is string {
  return typeof value === 'string' && REPO_ID_PATTERN.test(value)
}

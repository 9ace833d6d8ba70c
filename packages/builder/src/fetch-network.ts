import { isIPv4 } from 'node:net'
import { networkInterfaces } from 'node:os'
import { QuorateError } from '@quorate/core'

/**
 * What a fetch phase may reach. The fetch phase runs in its own network namespace behind
 * user-mode networking (pasta): it reaches the internet through the node's sockets, never the
 * node's loopback (nothing is forwarded to the host), never the host's own addresses, its
 * gateway, link-local/metadata addresses or the private ranges below, unless `allow` names a
 * range (the host's own addresses and gateway stay unreachable even then).
 */
export interface FetchNetworkPolicy {
  /** Extra IPv4 ranges (CIDR) a fetch phase may not reach. */
  deny: string[]
  /** IPv4 ranges (CIDR) a fetch phase may reach although a default range denies them (an internal mirror). */
  allow: string[]
}

export const DEFAULT_FETCH_NETWORK: FetchNetworkPolicy = { deny: [], allow: [] }

/**
 * Denied by default: "this network", private (RFC 1918), shared CGNAT, loopback, link-local
 * (cloud metadata at 169.254.169.254), IETF protocol assignments, benchmarking, multicast and
 * reserved ranges. A repository's fetch phase must not probe the node's internal network.
 */
export const DEFAULT_DENIED_RANGES: readonly string[] = [
  '0.0.0.0/8', '10.0.0.0/8', '100.64.0.0/10', '127.0.0.0/8', '169.254.0.0/16', '172.16.0.0/12',
  '192.0.0.0/24', '192.168.0.0/16', '198.18.0.0/15', '224.0.0.0/4', '240.0.0.0/4'
]

/**
 * The address inside the fetch namespace that pasta answers DNS on, forwarding to the host's
 * resolver (whatever address that has, loopback included); TEST-NET-2, never a real host.
 */
export const FETCH_DNS_ADDRESS = '198.51.100.53'

/** A validated IPv4 CIDR ("10.1.0.0/16"); a bare address means /32. */
export function parseCidr (text: string, field: string): string {
  const m = /^(\d{1,3}(?:\.\d{1,3}){3})(?:\/(\d{1,2}))?$/.exec(text)
  if (m === null || !isIPv4(m[1]) || (m[2] !== undefined && Number(m[2]) > 32)) {
    throw new QuorateError('CONFIG_INVALID', `${field}: "${text}" is not an IPv4 range; write it as CIDR, e.g. "10.20.0.0/16" or "10.20.0.5/32"`, { field })
  }
  return `${m[1]}/${m[2] ?? '32'}`
}

/** Checks a policy from a config file: every entry a CIDR. */
export function parseFetchNetworkPolicy (raw: unknown, field: string): FetchNetworkPolicy {
  if (raw === undefined) return DEFAULT_FETCH_NETWORK
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new QuorateError('CONFIG_INVALID', `${field}: must be an object {"deny": [CIDR…], "allow": [CIDR…]}`, { field })
  }
  const o = raw as Record<string, unknown>
  for (const key of Object.keys(o)) {
    if (key !== 'deny' && key !== 'allow') throw new QuorateError('CONFIG_INVALID', `${field}.${key}: unknown field; only "deny" and "allow" are read`, { field })
  }
  const list = (key: 'deny' | 'allow'): string[] => {
    const v = o[key]
    if (v === undefined) return []
    if (!Array.isArray(v)) throw new QuorateError('CONFIG_INVALID', `${field}.${key}: must be a list of IPv4 CIDR ranges`, { field })
    return v.map((x, i) => parseCidr(String(x), `${field}.${key}[${i}]`))
  }
  return { deny: list('deny'), allow: list('allow') }
}

/** The host's own IPv4 addresses on every interface (loopback included). */
export function hostAddresses (): string[] {
  const out = new Set<string>()
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4') out.add(a.address)
  }
  return [...out].sort()
}

/**
 * pasta's arguments for a fetch phase: a new user and network namespace configured like the
 * host's default interface, IPv4 only, no port forwarding in either direction (`-T none`:
 * otherwise pasta forwards the namespace's loopback to the host's), the gateway address not
 * mapped to the host, DNS answered at FETCH_DNS_ADDRESS. pasta must run unprivileged (it
 * creates the user namespace that owns the network namespace).
 */
export function pastaArgs (pasta: string): string[] {
  return [pasta, '--quiet', '--foreground', '--config-net', '--ipv4-only', '--no-map-gw',
    '-t', 'none', '-u', 'none', '-T', 'none', '-U', 'none', '--dns-forward', FETCH_DNS_ADDRESS, '--']
}

/**
 * A shell script run as the namespace's root before the sandbox starts (the build itself has
 * no capability over this namespace): unreachable routes for every denied range, the host's
 * own addresses and the gateway, routes through the gateway for allowed ranges, then exec
 * (with a /proc of pasta's pid namespace).
 */
export function fetchRoutesScript (policy: FetchNetworkPolicy, hostOwn: string[] = hostAddresses()): string {
  const ranges = (list: readonly string[]): string => list.map(r => parseCidr(r, 'range')).join(' ')
  const own = hostOwn.filter(a => isIPv4(a)).map(a => `${a}/32`)
  return [
    'set -e',
    // pasta configures the namespace while this runs: wait for its default route (5 s at most;
    // routes added before pasta is done make its own configuration, and so the phase, fail).
    'i=0; until [ -n "$(ip -4 route show default)" ] || [ $i -ge 250 ]; do i=$((i+1)); sleep 0.02; done',
    'gw=$(ip -4 route show default | { read -r _ _ g _; echo "$g"; })',
    `for r in ${ranges([...DEFAULT_DENIED_RANGES, ...policy.deny])}; do ip route add unreachable "$r"; done`,
    // No default route (an offline host): nothing to allow, and the fetch fails like offline.
    'if [ -n "$gw" ]; then',
    policy.allow.length > 0 ? `  for r in ${ranges(policy.allow)}; do ip route add "$r" via "$gw"; done` : '  :',
    `  ip route replace ${FETCH_DNS_ADDRESS}/32 via "$gw"`,
    '  ip route replace unreachable "$gw/32"',
    'fi',
    // Most specific, so an allowed range never opens them.
    `for r in ${own.join(' ')}; do ip route replace unreachable "$r"; done`,
    // pasta runs this as pid 1 of a new pid namespace, under the host's /proc: bubblewrap reads
    // its child's namespaces from /proc, so it gets a /proc of this pid namespace first.
    'exec unshare --mount --mount-proc -- "$@"'
  ].join('\n')
}

// mDNS discovery on a LAN, tested only inside two private network namespaces joined by a veth
// pair (mDNS sends real multicast: it must never reach the host's networks). Needs root and
// `ip` (Debian package iproute2); without them the test fails saying so.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { execFileSync, spawn } from 'node:child_process'
import { join } from 'node:path'

const SCRIPT = join(import.meta.dirname, '..', 'packages', 'network', 'test', 'fixtures', 'mdns-peer.mjs')
const tag = `q${process.pid % 100000}`
const NS = [`${tag}a`, `${tag}b`]
const VETH = [`${tag}va`, `${tag}vb`] // at most 15 characters
const ADDR = ['10.213.77.1', '10.213.77.2']

function ip (...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
}

function canUseNetns (): boolean {
  if (process.getuid?.() !== 0) return false
  try {
    ip('netns', 'add', `${tag}probe`)
    ip('netns', 'del', `${tag}probe`)
    return true
  } catch {
    return false
  }
}
const available = canUseNetns()

function cleanup (): void {
  for (const ns of NS) { try { ip('netns', 'del', ns) } catch {} } // deleting a namespace deletes its veth end, and so the pair
}

beforeAll(() => {
  if (!available) return
  cleanup()
  for (const ns of NS) ip('netns', 'add', ns)
  ip('link', 'add', VETH[0]!, 'type', 'veth', 'peer', 'name', VETH[1]!)
  for (const i of [0, 1]) {
    const [ns, dev, addr] = [NS[i]!, VETH[i]!, ADDR[i]!]
    ip('link', 'set', dev, 'netns', ns)
    ip('-n', ns, 'addr', 'add', `${addr}/24`, 'dev', dev)
    ip('-n', ns, 'link', 'set', dev, 'up', 'multicast', 'on')
    ip('-n', ns, 'link', 'set', 'lo', 'up')
    // no default route in a fresh namespace: multicast needs a route out of the veth
    ip('-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', dev)
  }
})

afterAll(() => { if (available) cleanup() })

interface PeerReport { peerId: string, multiaddrs: string[], peers: string[], received: Array<{ from: string, text: string }>, published: number, events: unknown[] }

function runPeer (ns: string, addr: string): Promise<PeerReport> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, SCRIPT, addr], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', d => { out += d })
    child.stderr.on('data', d => { err += d })
    const timer = setTimeout(() => { child.kill('SIGKILL') }, 80_000)
    child.on('close', (code) => {
      clearTimeout(timer)
      const line = out.trim().split('\n').pop() ?? ''
      try {
        resolve(JSON.parse(line) as PeerReport)
      } catch {
        reject(new Error(`peer in ${ns} exited with ${code}: ${out}\n${err}`))
      }
    })
  })
}

describe('mDNS in private network namespaces', () => {
  // Fail, never skip: CI runs as root and installs iproute2.
  it('can create private network namespaces here (root and iproute2)', () => {
    expect(available, 'needs root and `ip netns` (apt-get install iproute2)').toBe(true)
  })

  it('two nodes with no bootstrap list find each other by mDNS and gossip', async () => {
    const [a, b] = await Promise.all([runPeer(NS[0]!, ADDR[0]!), runPeer(NS[1]!, ADDR[1]!)])
    expect(a.peers).toContain(b.peerId)
    expect(b.peers).toContain(a.peerId)
    expect(a.multiaddrs[0]).toMatch(new RegExp(`^/ip4/${ADDR[0]!.replace(/\./g, '\\.')}/tcp/\\d+/p2p/${a.peerId}$`))
    expect(a.received.some(m => m.from === b.peerId && m.text.startsWith(`hello from ${b.peerId}`))).toBe(true)
    expect(b.received.some(m => m.from === a.peerId && m.text.startsWith(`hello from ${a.peerId}`))).toBe(true)
  }, 100_000)
})

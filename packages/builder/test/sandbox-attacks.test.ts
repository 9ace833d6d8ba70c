import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { execFile, execFileSync } from 'node:child_process'
import { promisify } from 'node:util'
import { lookup } from 'node:dns/promises'
import { readFile, stat } from 'node:fs/promises'
import { createServer, type Server } from 'node:net'
import { join } from 'node:path'
import { DEFAULT_RECIPE_LIMITS, type RecipeLimits } from '@quorate/core'
import { DEFAULT_ROOT_BUILD_ID, resolveBuildUser, type BuildOutcome } from '../src/index.js'
import { sandboxedBuildFixture } from './helpers.js'

// What a hostile repository's build tries against the node that runs it. These run as root in
// CI, like many servers: the sandbox must hold for a root node too.
const LIMITS: RecipeLimits = { ...DEFAULT_RECIPE_LIMITS, timeoutSeconds: 60, maxLogBytes: 256 * 1024 }
const isRoot = process.getuid?.() === 0

function outputOf (outcome: BuildOutcome): string {
  if (!outcome.ok) throw new Error(`build failed: ${outcome.reason}\n${outcome.log.tail}`)
  return outcome.log.tail
}

describe('a hostile build against a root node', () => {
  const { temp, build, workDir } = sandboxedBuildFixture('quorate-attack', LIMITS)

  it('runs under an unprivileged host uid and finds no kernel setting, /sys or sysrq it can write', async () => {
    const probes = ['/proc/sys/kernel/core_pattern', '/proc/sys/kernel/modprobe', '/proc/sys/vm/drop_caches', '/proc/sys/fs/lease-break-time', '/proc/sysrq-trigger', '/sys/kernel', '/sys/fs/cgroup']
    const script = [
      'mkdir -p out',
      // Access checks only: a test must never write host settings.
      `for f in ${probes.join(' ')} /proc/sys/fs/*; do if [ -w "$f" ]; then echo "writable $f"; fi; done > out/writable`,
      'echo done >> out/writable',
      'cat /proc/self/uid_map > out/uid_map',
      'touch made-by-build'
    ].join('\n')
    const dir = workDir()
    const copy = join(await temp.make(), 'copy')
    const outcome = await build({ build: ['sh', '-c', script] }, { outputCopyDir: copy, workDir: dir, keepWorkDir: true })
    outputOf(outcome)
    expect(await readFile(join(copy, 'writable'), 'utf8')).toBe('done\n')
    // The file the build made belongs, on the host, to the build user: never root.
    const owner = (await stat(join(dir, 'src', 'made-by-build'))).uid
    expect(owner).toBe(resolveBuildUser().uid)
    if (isRoot) expect(owner).toBe(DEFAULT_ROOT_BUILD_ID)
    expect(owner).not.toBe(0)
    // Inside, the build is uid 1000; outside, that is the build user.
    expect((await readFile(join(copy, 'uid_map'), 'utf8')).trim().split(/\s+/)[0]).toBe('1000')
  })

  it('refuses a configured build uid 0 with a message that says what to do', () => {
    if (!isRoot) return expect(() => resolveBuildUser({ uid: 0, gid: 0 })).toThrow(/needs a node running as root/)
    expect(() => resolveBuildUser({ uid: 0, gid: 0 })).toThrow(/never run as host uid or gid 0/)
    expect(resolveBuildUser({ uid: 4321, gid: 4322 })).toEqual({ uid: 4321, gid: 4322, drop: true })
  })
})

/** A TCP listener answering "hello" on `host`. */
async function listen (host: string): Promise<{ server: Server, port: number }> {
  const server = createServer(socket => { socket.on('error', () => {}); socket.end('hello\n') })
  await new Promise<void>(resolve => server.listen(0, host, resolve))
  return { server, port: (server.address() as { port: number }).port }
}

function ip (...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8' })
}

/** A shell line that prints "<label>=reached" or "<label>=blocked" for a TCP connect (3 s at most). */
function probe (label: string, host: string, port: number): string {
  return `if timeout 3 bash -c 'exec 3<>/dev/tcp/${host}/${port} && head -c 5 <&3' >/dev/null 2>&1; then echo "${label}=reached"; else echo "${label}=blocked"; fi`
}

describe('the fetch phase network', () => {
  const { temp, build } = sandboxedBuildFixture('quorate-fetchnet', LIMITS)
  // A test host in a network namespace of its own, joined to the host by a veth pair.
  const tag = `q${process.pid % 10000}`
  const ns = `${tag}-testhost`
  const subnet = `10.${199 - (process.pid % 50)}.7`
  const hostSide = `${subnet}.1`
  const testHost = `${subnet}.2`
  let testHostServer: { kill: () => void } | undefined
  const testHostPort = 18000 + (process.pid % 1000)
  let loopback: { server: Server, port: number }
  let any: { server: Server, port: number }
  let gateway: string
  let ownAddress: string

  beforeAll(async () => {
    loopback = await listen('127.0.0.1')
    any = await listen('0.0.0.0')
    const route = ip('-4', 'route', 'show', 'default').split(/\s+/)
    gateway = route[route.indexOf('via') + 1]
    ownAddress = ip('-4', '-o', 'addr', 'show', 'scope', 'global').split('\n').map(l => /inet ([\d.]+)/.exec(l)?.[1]).find(a => a !== undefined) as string
    try { ip('netns', 'del', ns) } catch {}
    ip('netns', 'add', ns)
    ip('link', 'add', `${tag}h`, 'type', 'veth', 'peer', 'name', `${tag}n`)
    ip('link', 'set', `${tag}n`, 'netns', ns)
    ip('addr', 'add', `${hostSide}/30`, 'dev', `${tag}h`)
    ip('link', 'set', `${tag}h`, 'up')
    ip('-n', ns, 'addr', 'add', `${testHost}/30`, 'dev', `${tag}n`)
    ip('-n', ns, 'link', 'set', `${tag}n`, 'up')
    ip('-n', ns, 'link', 'set', 'lo', 'up')
    const { spawn } = await import('node:child_process')
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e',
      `require('net').createServer(s => { s.on('error', () => {}); s.end('hello\\n') }).listen(${testHostPort}, '${testHost}', () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] })
    testHostServer = child
    await new Promise<void>((resolve, reject) => {
      child.stdout.once('data', () => resolve())
      child.once('exit', code => reject(new Error(`test host exited with ${String(code)}`)))
    })
  })

  afterAll(async () => {
    testHostServer?.kill()
    try { ip('link', 'del', `${tag}h`) } catch {}
    try { ip('netns', 'del', ns) } catch {}
    await new Promise(resolve => loopback?.server.close(resolve))
    await new Promise(resolve => any?.server.close(resolve))
  })

  it('reaches neither the host loopback, nor the host through its gateway or own addresses, nor private ranges', async () => {
    const lines = [
      probe('loopback', '127.0.0.1', loopback.port),
      probe('loopback-any', '127.0.0.1', any.port),
      probe('gateway', gateway, any.port),
      probe('own-address', ownAddress, any.port),
      probe('veth-address', hostSide, any.port),
      probe('private-test-host', testHost, testHostPort),
      probe('metadata', '169.254.169.254', 80)
    ]
    const copy = join(await temp.make(), 'copy')
    const outcome = await build({
      fetch: ['sh', '-c', `{ ${lines.join('; ')}; } > fetch-report`],
      build: ['sh', '-c', 'mkdir out && cp fetch-report out/']
    }, { outputCopyDir: copy })
    outputOf(outcome)
    expect((await readFile(join(copy, 'fetch-report'), 'utf8')).trim().split('\n')).toEqual([
      'loopback=blocked', 'loopback-any=blocked', 'gateway=blocked', 'own-address=blocked', 'veth-address=blocked',
      'private-test-host=blocked', 'metadata=blocked'
    ])
    // The same probes from the node itself do connect: the answers above are the sandbox's doing.
    // (Asynchronously: the listeners live in this process.)
    const { stdout: direct } = await promisify(execFile)('sh', ['-c', [probe('loopback', '127.0.0.1', loopback.port), probe('own-address', ownAddress, any.port), probe('private-test-host', testHost, testHostPort)].join('; ')])
    expect(direct.trim().split('\n')).toEqual(['loopback=reached', 'own-address=reached', 'private-test-host=reached'])
  })

  it('reaches a range the node config allows, still not the host, and resolves names', async () => {
    // The host resolves this name (npm ci needed it); the fetch phase must too, through pasta's DNS forwarder.
    const name = 'registry.npmjs.org'
    await lookup(name)
    const copy = join(await temp.make(), 'copy')
    const outcome = await build({
      fetch: ['sh', '-c', `{ ${probe('allowed-test-host', testHost, testHostPort)}; ${probe('veth-address', hostSide, any.port)}; if getent hosts ${name} >/dev/null; then echo dns=ok; else echo dns=failed; fi; } > fetch-report`],
      build: ['sh', '-c', 'mkdir out && cp fetch-report out/']
    }, { outputCopyDir: copy, fetchNetwork: { deny: [], allow: [`${subnet}.0/24`] } })
    outputOf(outcome)
    expect((await readFile(join(copy, 'fetch-report'), 'utf8')).trim().split('\n')).toEqual(['allowed-test-host=reached', 'veth-address=blocked', 'dns=ok'])
  })

  it('denies ranges the node config adds', async () => {
    const copy = join(await temp.make(), 'copy')
    const outcome = await build({
      fetch: ['sh', '-c', `{ ${probe('denied-test-host', testHost, testHostPort)}; } > fetch-report`],
      build: ['sh', '-c', 'mkdir out && cp fetch-report out/']
    }, { outputCopyDir: copy, fetchNetwork: { deny: [`${testHost}/32`], allow: [`${subnet}.0/24`] } })
    outputOf(outcome)
    expect(await readFile(join(copy, 'fetch-report'), 'utf8')).toBe('denied-test-host=blocked\n')
  })
})

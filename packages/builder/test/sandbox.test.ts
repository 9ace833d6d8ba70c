import { describe, it, expect } from 'vitest'
import { join } from 'node:path'
import { readFile, writeFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { DEFAULT_RECIPE_LIMITS, type Recipe, type RecipeLimits } from '@quorate/core'
import { detectSandbox } from '../src/index.js'
import { sandboxedBuildFixture, processesWith } from './helpers.js'

// These tests need bubblewrap (apt-get install bubblewrap) and a kernel that allows it to
// create namespaces; detectSandbox() failing is itself a failure here.
const LIMITS: RecipeLimits = { ...DEFAULT_RECIPE_LIMITS, timeoutSeconds: 30, maxLogBytes: 64 * 1024 }

describe('runBuild in the bubblewrap sandbox', () => {
  const { temp, build } = sandboxedBuildFixture('quorate-sandbox', LIMITS)

  it('is available here', async () => {
    expect(await detectSandbox()).toBe('bwrap')
  })

  it('builds at the same paths on every node, as an unprivileged user', async () => {
    // The output embeds the build's own paths and user: identical only because the sandbox fixes them.
    const recipe = { build: ['sh', '-c', 'mkdir out && pwd > out/where && echo "$HOME" > out/home && id -u > out/uid && id -g >> out/uid && cat /etc/passwd | cut -d: -f1 > out/users && cp in.txt out/'] }
    const a = await build(recipe)
    const b = await build(recipe)
    if (!a.ok || !b.ok) throw new Error(`build failed: ${JSON.stringify(a.ok ? b : a)}`)
    expect(a.output.narSha256).toBe(b.output.narSha256)
    const copy = join(await temp.make(), 'copy')
    const c = await build(recipe, { outputCopyDir: copy })
    expect(c.ok && c.output.narSha256).toBe(a.output.narSha256)
    expect(await readFile(join(copy, 'where'), 'utf8')).toBe('/build/src\n')
    expect(await readFile(join(copy, 'home'), 'utf8')).toBe('/build/home\n')
    expect(await readFile(join(copy, 'uid'), 'utf8')).toBe('1000\n1000\n')
    expect(await readFile(join(copy, 'users'), 'utf8')).toBe('build\nnobody\n')
    expect(a.fingerprint.sandbox).toBe('bwrap')
    expect(a.fingerprint.tools.bwrap).toMatch(/^bubblewrap /)
  })

  it('cuts the build off from the network, the host file system and the node data dir', async () => {
    const server: Server = createServer(socket => {
      socket.on('error', () => {}) // the probe closes without reading everything
      socket.end('hello from the host\n')
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    const port = (server.address() as { port: number }).port
    const dataDir = await temp.make('quorate-node-data-')
    await writeFile(join(dataDir, 'builder-key.json'), 'TOP-SECRET-KEY-MATERIAL', { mode: 0o600 })
    try {
      const probe = (label: string): string =>
        `if bash -c 'exec 3<>/dev/tcp/127.0.0.1/${port} && head -c 5 <&3' >/dev/null 2>&1; then echo "${label} network=reached"; else echo "${label} network=blocked"; fi`
      const recipe: Partial<Recipe> = {
        fetch: ['sh', '-c', `${probe('fetch')} > fetch-report`],
        build: ['sh', '-c', [
          'mkdir -p out && cp fetch-report out/report',
          `${probe('build')} >> out/report`,
          'for p in / /usr /etc /build /home /root; do if touch "$p/quorate-probe" 2>/dev/null; then echo "write $p=yes"; else echo "write $p=no"; fi; done >> out/report',
          'if touch /tmp/probe && touch /build/home/probe; then echo "write tmp+home=yes" >> out/report; fi'
        ].join('\n')]
      }
      const copyA = join(await temp.make(), 'copy')
      const sandboxed = await build(recipe, { outputCopyDir: copyA })
      if (!sandboxed.ok) throw new Error(sandboxed.reason + sandboxed.log.tail)
      const report = await readFile(join(copyA, 'report'), 'utf8')
      expect(report.split('\n').filter(l => l.length > 0)).toEqual([
        'fetch network=blocked', // the fetch phase has a network, but never the host's loopback (see sandbox-attacks.test.ts)
        'build network=blocked',
        'write /=no', 'write /usr=no', 'write /etc=no', 'write /build=no', 'write /home=no', 'write /root=no',
        'write tmp+home=yes'
      ])
      expect(existsSync('/usr/quorate-probe')).toBe(false)

      // The same probe without the sandbox does reach the listener, so the check above is real.
      const copyB = join(await temp.make(), 'copy')
      const unsandboxed = await build({ build: ['sh', '-c', `mkdir out && ${probe('none')} > out/report`] }, { sandbox: 'none', outputCopyDir: copyB })
      expect(unsandboxed.ok).toBe(true)
      expect(await readFile(join(copyB, 'report'), 'utf8')).toBe('none network=reached\n')

      // The node's data dir (its key) does not exist inside; without the sandbox it would be read.
      const steal = { build: ['sh', '-c', 'mkdir -p out && cat "$0" > out/stolen', join(dataDir, 'builder-key.json')] }
      const stolen = await build(steal)
      expect(stolen.ok).toBe(false)
      expect(stolen.ok === false && stolen.log.tail).toContain('No such file or directory')
      expect(JSON.stringify(stolen)).not.toContain('TOP-SECRET')
      const leaked = await build(steal, { sandbox: 'none' })
      expect(leaked.ok).toBe(true)
    } finally {
      await new Promise(resolve => server.close(resolve))
    }
  })

  it('kills every process in the sandbox at the timeout, even ones that left the session', async () => {
    const marker = `quorate-bwrap-hang-${process.pid}-${Date.now()}`
    const started = Date.now()
    const outcome = await build({ build: ['sh', '-c', `setsid sh -c "sleep 1000; : ${marker}" & sh -c "sleep 1000; : ${marker}"`] }, { limits: { ...LIMITS, timeoutSeconds: 1 } })
    expect(Date.now() - started).toBeLessThan(5000)
    expect(outcome.ok === false && outcome.timedOut).toBe(true)
    expect(await processesWith(marker)).toEqual([])
  })
})


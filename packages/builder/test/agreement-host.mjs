// One "builder host" for agreement.test.ts: a separate Node process (its own environment, user,
// umask, CPU set, hostname and data directory) that mirrors the origin and runs builds with the
// compiled package, as a node would. Input: one JSON argument; output: one JSON line on stdout.
import { readFileSync } from 'node:fs'
import { availableParallelism, hostname } from 'node:os'
import { join } from 'node:path'

const { GitMirror, runBuild } = await import(new URL('../dist/index.js', import.meta.url).href)
const request = JSON.parse(process.argv[2])
const umask = /^Umask:\s*(\d+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]
const host = {
  uid: process.getuid(),
  hostname: hostname(),
  umask,
  nproc: availableParallelism(),
  TZ: process.env.TZ,
  LANG: process.env.LANG,
  LC_ALL: process.env.LC_ALL,
  HOME: process.env.HOME,
  extraEnv: Object.keys(process.env).filter(k => k.startsWith('QUORATE_HOST_NOISE')).length,
  startedAt: Date.now()
}
const mirror = new GitMirror({ url: request.origin, dir: join(request.dataDir, 'git', 'demo.git') })
await mirror.fetch()
const builds = []
for (const b of request.builds) {
  const outcome = await runBuild({
    repoId: 'demo',
    commit: request.commit,
    ref: 'refs/heads/main',
    mirror,
    workDir: join(request.dataDir, 'work', b.name),
    recipe: b.recipe,
    limits: request.limits,
    sandbox: b.sandbox
  })
  builds.push(outcome.ok
    ? { name: b.name, ok: true, narSha256: outcome.output.narSha256, fileListSha256: outcome.output.fileListSha256, log: outcome.log.head }
    : { name: b.name, ok: false, reason: outcome.reason, log: outcome.log.tail })
}
process.stdout.write(JSON.stringify({ host, builds }) + '\n')

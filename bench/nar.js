// narSha256 of a 1 GiB tree (20k small files and a few large; quick: 64 MiB) with the builder's
// hashNar, next to sha256sum over the same files (the page cache warm for both).
//   node bench/nar.js [--quick]
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, rmSync, writeFileSync, appendFileSync } from 'node:fs'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { hashNar } from '@quorate/builder'
import { CACHE, QUICK, fmt, record, secs } from './lib/common.js'

const SMALL = QUICK ? 2_000 : 20_000
const LARGE = QUICK ? 1 : 4
const TOTAL = QUICK ? 64 * 2 ** 20 : 2 ** 30
const tree = join(CACHE, `nar-tree-${SMALL}-${LARGE}-${TOTAL}`)

if (!existsSync(join(tree, '.complete'))) {
  rmSync(tree, { recursive: true, force: true })
  const t = performance.now()
  let small = 0
  const noise = randomBytes(1 << 20)
  for (let i = 0; i < SMALL; i++) {
    const dir = join(tree, 'src', `d${i % 100}`, `e${Math.floor(i / 100) % 20}`)
    if (i < 2000) mkdirSync(dir, { recursive: true })
    const size = 512 + (i * 7919) % 16_384 // 0.5–16.5 KiB
    writeFileSync(join(dir, `f${i}.dat`), noise.subarray(i % 1000, i % 1000 + size), { mode: i % 10 === 0 ? 0o755 : 0o644 })
    small += size
  }
  const each = Math.floor((TOTAL - small) / LARGE)
  mkdirSync(join(tree, 'big'), { recursive: true })
  for (let i = 0; i < LARGE; i++) {
    const f = join(tree, 'big', `blob${i}.bin`)
    for (let w = 0; w < each; w += noise.length) appendFileSync(f, w + noise.length <= each ? randomBytes(noise.length) : randomBytes(each - w))
  }
  writeFileSync(join(tree, '.complete'), '')
  console.log(`  tree written in ${secs(performance.now() - t)} (not timed)`)
}

const sha256sum = () => {
  const t = performance.now()
  const r = spawnSync('sh', ['-c', 'find . -type f -print0 | xargs -0 sha256sum > /dev/null'], { cwd: tree })
  if (r.status !== 0) throw new Error(`sha256sum failed: ${r.stderr}`)
  return performance.now() - t
}
const nar = async () => { const t = performance.now(); await hashNar(tree); return performance.now() - t }

sha256sum() // warm the page cache
const s1 = sha256sum()
const n1 = await nar()
const s2 = sha256sum()
const n2 = await nar()
const shaMs = Math.min(s1, s2)
const narMs = Math.min(n1, n2)
const mib = TOTAL / 2 ** 20
console.log(`  sha256sum: ${secs(shaMs)} (${fmt(mib / (shaMs / 1000))} MiB/s); hashNar: ${secs(narMs)} (${fmt(mib / (narMs / 1000))} MiB/s)`)
const ratio = shaMs / narMs
record({
  id: 'nar',
  benchmark: `narSha256 of a ${fmt(mib)} MiB tree (${fmt(SMALL)} small files, ${LARGE} large)`,
  figure: `${secs(narMs)} (${fmt(mib / (narMs / 1000))} MiB/s)`,
  limit: `${secs(shaMs)} sha256sum over the same files`,
  ratio,
  target: '≥ 0.9 (speed relative to sha256sum)',
  meets: ratio >= 0.9,
  values: { bytes: TOTAL, narMs, shaMs }
})

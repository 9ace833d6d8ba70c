import { describe, it, expect, afterEach } from 'vitest'
import { join } from 'node:path'
import { DEFAULT_RECIPE_LIMITS } from '@quorate/core'
import { GitMirror, readRepoRecipe } from '../src/index.js'
import { tempDirs, makeRepo, commitFiles, git } from './helpers.js'

const T0 = 1_700_000_000

describe('readRepoRecipe (recipeFromRepo: nodes and quorate rebuild read it alike)', () => {
  const temp = tempDirs()
  afterEach(temp.cleanup)

  it('caps the limits a commit asks for at the defaults, and names what is wrong with a missing, invalid or rootless recipe', async () => {
    const root = await temp.make()
    const repo = await makeRepo(join(root, 'repo'))
    const greedy = { build: ['make'], output: 'out', timeoutSeconds: 99_999, memoryBytes: 64 * 1024 ** 3, maxLogBytes: 1024 }
    const c1 = await commitFiles(repo, { '.quorate/recipe.json': JSON.stringify(greedy) }, 'greedy recipe', T0)
    const c2 = await commitFiles(repo, { '.quorate/recipe.json': '{"build": ["make"], "output": "out", "build": ["x"]}' }, 'duplicate key', T0 + 60)
    await git(repo, ['rm', '-q', '.quorate/recipe.json'])
    const c3 = await commitFiles(repo, { README: 'no recipe' }, 'no recipe', T0 + 120)
    const mirror = new GitMirror({ url: repo, dir: join(root, 'mirror.git') })
    await mirror.fetch()
    const read = await readRepoRecipe(mirror, c1, { requireRoot: false })
    expect(read).toEqual({ ok: true, spec: { recipe: { build: ['make'], output: 'out', outputKind: 'dir' }, limits: { ...DEFAULT_RECIPE_LIMITS, maxLogBytes: 1024 } } })
    expect(await readRepoRecipe(mirror, c1, { requireRoot: true })).toEqual({ ok: false, reason: expect.stringMatching(/requires a pinned build root .*\.quorate\/recipe\.json has no "root"/) })
    expect(await readRepoRecipe(mirror, c2, { requireRoot: false })).toEqual({ ok: false, reason: expect.stringMatching(/\.quorate\/recipe\.json/) })
    expect(await readRepoRecipe(mirror, c3, { requireRoot: false })).toEqual({ ok: false, reason: 'the commit has no .quorate/recipe.json, and the policy says the recipe comes from the repository' })
  })
})

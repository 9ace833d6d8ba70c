import { parseArgs } from 'node:util'
import { writeFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { QuorateError, parsePolicy, parseRecipeSpec } from '@quorate/core'
import { readJsonFile } from '@quorate/node/config'

interface RepoEntry { id: string, url: string, branches: string[], tags?: string[], recipe?: unknown, recipeFromRepo?: true }

export interface AssembleIo {
  print: (text: string) => void
  printErr: (line: string) => void
  usage: (msg: string) => never
}

/**
 * `quorate policy assemble`: the members' member.json files and one or more repositories
 * (`--repo` groups on the command line, in order, and/or `--repos FILE`) into a policy,
 * validated by the same parser every node runs.
 */
export function assemblePolicy (args: string[], io: AssembleIo): number {
  const { values, tokens } = parseArgs({
    args,
    tokens: true,
    options: {
      member: { type: 'string', multiple: true }, repo: { type: 'string', multiple: true }, url: { type: 'string', multiple: true },
      branch: { type: 'string', multiple: true }, tag: { type: 'string', multiple: true }, recipe: { type: 'string', multiple: true },
      repos: { type: 'string' }, threshold: { type: 'string' }, mode: { type: 'string' }, out: { type: 'string' }
    }
  })
  if (values.member === undefined) io.usage('policy assemble needs --member FILE (one per builder)')

  // Each --repo opens a group; --url, --branch, --tag and --recipe belong to the latest one.
  const groups: Array<{ id: string, url?: string, branches: string[], tags: string[], recipe?: string }> = []
  for (const t of tokens) {
    if (t.kind !== 'option' || !['repo', 'url', 'branch', 'tag', 'recipe'].includes(t.name)) continue
    const value = t.value as string
    if (t.name === 'repo') { groups.push({ id: value, branches: [], tags: [] }); continue }
    const g = groups.at(-1)
    if (g === undefined) io.usage(`--${t.name} ${value} comes before any --repo; write --repo ID first, then its --url, --branch, --tag and --recipe`)
    if (t.name === 'url') { if (g.url !== undefined) io.usage(`--repo ${g.id} has two --url`); g.url = value }
    if (t.name === 'recipe') { if (g.recipe !== undefined) io.usage(`--repo ${g.id} has two --recipe`); g.recipe = value }
    if (t.name === 'branch') g.branches.push(value)
    if (t.name === 'tag') g.tags.push(value)
  }
  const repositories: RepoEntry[] = []
  for (const g of groups) {
    if (g.url === undefined || g.recipe === undefined) io.usage(`--repo ${g.id} needs its --url and --recipe (after it)`)
    const recipe = readJsonFile(g.recipe, 'recipe')
    parseRecipeSpec(recipe, g.recipe)
    repositories.push({ id: g.id, url: g.url, branches: g.branches.length > 0 ? g.branches : ['main'], ...(g.tags.length > 0 ? { tags: g.tags } : {}), recipe })
  }
  if (values.repos !== undefined) repositories.push(...readReposFile(values.repos))
  if (repositories.length === 0) io.usage('policy assemble needs at least one repository: --repo ID --url GIT_URL --recipe FILE (repeatable), or --repos FILE')

  const builders = new Map<string, { name: string, org: string, endpoint?: string, keys: Array<{ publicKey: string }> }>()
  for (const f of values.member) {
    const m = readJsonFile(f, 'member file') as { name?: string, org?: string, publicKey?: string, endpoint?: string }
    if (typeof m.name !== 'string' || typeof m.org !== 'string' || typeof m.publicKey !== 'string') throw new QuorateError('CONFIG_INVALID', `${f}: not a member file; "quorate init" writes member.json`)
    const b = builders.get(m.name) ?? { name: m.name, org: m.org, ...(m.endpoint !== undefined ? { endpoint: m.endpoint } : {}), keys: [] }
    b.keys.push({ publicKey: m.publicKey })
    builders.set(m.name, b)
  }
  const doc = {
    version: 1,
    builders: [...builders.values()],
    repositories,
    quorum: { ...(values.threshold !== undefined ? { threshold: Number(values.threshold) } : {}), ...(values.mode !== undefined ? { mode: values.mode } : {}) }
  }
  const p = parsePolicy(doc, values.out ?? 'policy')
  const text = JSON.stringify(doc, null, 2) + '\n'
  if (values.out !== undefined) writeFileSync(values.out, text)
  else io.print(text)
  io.printErr(`policy digest ${p.digest}: ${p.builders.size} builders, ${p.orgs.length} organizations, ${p.repositories.size} repositor${p.repositories.size === 1 ? 'y' : 'ies'}, threshold ${p.threshold}; every member must run with this exact file`)
  return 0
}

/** `--repos FILE`: a JSON list of {id, url, branches?, tags?, recipe (a file, relative to FILE, or the recipe itself) | recipeFromRepo: true}. */
function readReposFile (file: string): RepoEntry[] {
  const raw = readJsonFile(file, 'repository list')
  const bad = (where: string, msg: string): never => { throw new QuorateError('CONFIG_INVALID', `${file}: ${where}: ${msg}`, { file }) }
  if (!Array.isArray(raw) || raw.length === 0) bad('(top level)', 'must be a non-empty JSON list of {"id", "url", "branches"?, "tags"?, "recipe": "FILE" | {…}}')
  return (raw as unknown[]).map((r, i) => {
    if (r === null || typeof r !== 'object' || Array.isArray(r)) return bad(`[${i}]`, 'must be an object {id, url, branches?, tags?, recipe}')
    const e = r as Record<string, unknown>
    for (const k of Object.keys(e)) if (!['id', 'url', 'branches', 'tags', 'recipe', 'recipeFromRepo'].includes(k)) bad(`[${i}].${k}`, 'unknown field; allowed: id, url, branches, tags, recipe, recipeFromRepo')
    if (typeof e.id !== 'string' || typeof e.url !== 'string') bad(`[${i}]`, 'needs "id" and "url" strings')
    let recipe: unknown
    if (typeof e.recipe === 'string') {
      const recipeFile = resolve(dirname(file), e.recipe)
      recipe = readJsonFile(recipeFile, 'recipe')
      parseRecipeSpec(recipe, recipeFile)
    } else if (e.recipe !== undefined) {
      recipe = e.recipe
    }
    return {
      id: e.id as string,
      url: e.url as string,
      branches: Array.isArray(e.branches) ? e.branches as string[] : ['main'],
      ...(e.tags !== undefined ? { tags: e.tags as string[] } : {}),
      ...(recipe !== undefined ? { recipe } : {}),
      ...(e.recipeFromRepo === true ? { recipeFromRepo: true as const } : {})
    }
  })
}

import { QuorateError } from './errors.js'

/** The image configuration a recipe may set (the OCI image config's `config` object, a subset). */
export interface OciImageConfig {
  Entrypoint?: string[]
  Cmd?: string[]
  /** "NAME=value" entries. */
  Env?: string[]
  /** An absolute path in the image. */
  WorkingDir?: string
  /** "80/tcp", "53/udp", … */
  ExposedPorts?: string[]
  Labels?: Record<string, string>
  User?: string
  StopSignal?: string
}

/** `recipe.image`, validated (parseImageSpec). */
export interface OciImageSpec {
  config?: OciImageConfig
  /** The `org.opencontainers.image.ref.name` annotation; default `<repoId>:<commit>`. */
  refName?: string
  /** The image to put the output on top of: an OCI layout inside the checkout (fetched in the fetch phase), pinned by its manifest digest. */
  base?: { layout: string, digest: string }
  /** GOARCH-style architecture the image claims; default the base image's, else the builder's. */
  architecture?: string
}

const DIGEST = /^sha256:[0-9a-f]{64}$/
/** The OCI image-layout grammar for ref names: components separated by "/", with -._:@+ or -- inside. */
const REF_NAME = /^[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*(?:\/[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*)*$/
const PORT = /^[0-9]{1,5}(?:\/(?:tcp|udp|sctp))?$/
const ARCH = /^[a-z0-9]{1,32}$/

/**
 * Validates `recipe.image` (untrusted: from the policy or the repository); `where` names it in
 * errors. Throws RECIPE_INVALID naming the field.
 */
export function parseImageSpec (raw: unknown, where: string): OciImageSpec {
  const bad = (field: string, what: string): never => {
    throw new QuorateError('RECIPE_INVALID', `${where}${field}: ${what}`, { field: `${where}${field}` })
  }
  if (raw === undefined) return {}
  if (!isObject(raw)) bad('', 'must be an object like {"config":{"Cmd":["/app"]},"refName":"app:1.0"}')
  const r = raw as Record<string, unknown>
  const known = ['config', 'refName', 'base', 'architecture']
  for (const k of Object.keys(r)) if (!known.includes(k)) bad(`.${k}`, `unknown field; allowed: ${known.join(', ')}`)
  const spec: OciImageSpec = {}
  if (r.refName !== undefined) {
    if (typeof r.refName !== 'string' || r.refName.length > 256 || !REF_NAME.test(r.refName)) {
      bad('.refName', 'must be an OCI ref name such as "app:1.0" or "example.org/app:v2" (letters and digits, separated by / . _ - : @ +)')
    }
    spec.refName = r.refName as string
  }
  if (r.architecture !== undefined) {
    if (typeof r.architecture !== 'string' || !ARCH.test(r.architecture)) bad('.architecture', 'must be a GOARCH name such as "amd64" or "arm64"')
    spec.architecture = r.architecture as string
  }
  if (r.base !== undefined) {
    if (!isObject(r.base)) bad('.base', 'must be {"layout": "<OCI layout dir in the checkout>", "digest": "sha256:<manifest digest>"}')
    const b = r.base as Record<string, unknown>
    for (const k of Object.keys(b)) if (k !== 'layout' && k !== 'digest') bad(`.base.${k}`, 'unknown field; allowed: layout, digest')
    if (typeof b.digest !== 'string' || !DIGEST.test(b.digest)) bad('.base.digest', 'must be the base image manifest digest, "sha256:" and 64 lowercase hex digits')
    if (typeof b.layout !== 'string' || b.layout.length === 0 || b.layout.startsWith('/') || b.layout.includes('\0') || b.layout.split('/').includes('..')) {
      bad('.base.layout', 'must be a relative path inside the checkout without ".." (an OCI layout that the fetch phase wrote)')
    }
    spec.base = { layout: b.layout as string, digest: b.digest as string }
  }
  if (r.config !== undefined) {
    if (!isObject(r.config)) bad('.config', 'must be an object with Entrypoint, Cmd, Env, WorkingDir, ExposedPorts, Labels, User or StopSignal')
    const c = r.config as Record<string, unknown>
    const config: OciImageConfig = {}
    const strings = (k: string, v: unknown, check?: (s: string) => boolean, what = 'an array of strings'): string[] => {
      if (!Array.isArray(v) || !v.every(s => typeof s === 'string' && !s.includes('\0') && (check === undefined || check(s)))) bad(`.config.${k}`, `must be ${what}`)
      return [...(v as string[])]
    }
    for (const [k, v] of Object.entries(c)) {
      switch (k) {
        case 'Entrypoint': case 'Cmd':
          config[k] = strings(k, v)
          break
        case 'Env':
          config.Env = strings(k, v, s => /^[^=]+=/.test(s), 'an array of "NAME=value" strings')
          break
        case 'ExposedPorts':
          config.ExposedPorts = strings(k, v, s => PORT.test(s), 'an array of ports such as "8080/tcp" or "53/udp"')
          break
        case 'WorkingDir':
          if (typeof v !== 'string' || !v.startsWith('/') || v.includes('\0')) bad('.config.WorkingDir', 'must be an absolute path such as "/app"')
          config.WorkingDir = v as string
          break
        case 'User': case 'StopSignal':
          if (typeof v !== 'string' || v.length === 0 || v.includes('\0')) bad(`.config.${k}`, 'must be a non-empty string')
          config[k] = v as string
          break
        case 'Labels':
          if (!isObject(v) || !Object.values(v).every(s => typeof s === 'string')) bad('.config.Labels', 'must be an object of string values')
          config.Labels = { ...(v as Record<string, string>) }
          break
        default:
          bad(`.config.${k}`, 'unknown field; allowed: Entrypoint, Cmd, Env, WorkingDir, ExposedPorts, Labels, User, StopSignal')
      }
    }
    spec.config = config
  }
  return spec
}

function isObject (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

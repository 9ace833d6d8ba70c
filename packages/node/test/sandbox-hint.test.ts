import { describe, it, expect } from 'vitest'
import { sandboxFailureHint } from '../src/sandbox-hint.js'

const probe = (stderr: string): string => `bubblewrap cannot create the build sandbox here: ${stderr}; allow unprivileged user namespaces`

describe('sandboxFailureHint', () => {
  it('names Docker\'s systempaths option when bwrap cannot mount /proc (bubblewrap #284, #505)', () => {
    const p = probe('bwrap: Can\'t mount proc on /newroot/proc: Operation not permitted')
    expect(sandboxFailureHint(p, true)).toMatch(/systempaths=unconfined.*docs\/joining-a-network\.md/)
    expect(sandboxFailureHint(p, false)).toMatch(/masks or overmounts \/proc.*systempaths=unconfined/)
  })

  it('names the seccomp and AppArmor options in a container that refuses user namespaces', () => {
    const p = probe('bwrap: No permissions to creating new namespace, likely because the kernel does not allow non-privileged user namespaces.')
    expect(sandboxFailureHint(p, true)).toMatch(/seccomp=unconfined.*apparmor=unconfined/)
    expect(sandboxFailureHint(p, false)).toBeUndefined()
    expect(sandboxFailureHint('bubblewrap is not installed (no bwrap on PATH); install it (apt-get install bubblewrap)', true)).toBeUndefined()
  })
})

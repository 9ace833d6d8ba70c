/**
 * What to do about a sandbox that cannot start, from bubblewrap's own error: the probe's
 * sentence (which quotes bwrap's stderr), plus the fix for the cases operators meet in
 * containers. Pure: the caller says whether it runs in a container.
 */
export function sandboxFailureHint (probe: string, inContainer: boolean): string | undefined {
  // Docker masks /proc paths (bind mounts over /proc/kcore, /proc/sys …); the kernel then refuses
  // a fresh /proc in a new namespace (bubblewrap issues #284, #505).
  if (/can't mount proc|mount.*\/proc.*(operation not permitted|permission denied)/i.test(probe)) {
    return inContainer
      ? 'this looks like Docker\'s masked /proc paths: run the container with security_opt "systempaths=unconfined" (docker run --security-opt systempaths=unconfined; docker-compose.yml sets it), see docs/joining-a-network.md'
      : 'bubblewrap cannot mount a fresh /proc here: something masks or overmounts /proc (a container runtime?); in Docker use security_opt "systempaths=unconfined"'
  }
  if (inContainer && /(new namespace|unshare|uid map|operation not permitted)/i.test(probe)) {
    return 'inside a container, user namespaces also need Docker\'s seccomp and AppArmor profiles relaxed: security_opt "seccomp=unconfined" and "apparmor=unconfined" (docker-compose.yml sets them), see docs/joining-a-network.md'
  }
  return undefined
}

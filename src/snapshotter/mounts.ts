import type { Mount, MountSubject } from './types.js';

/**
 * The mount specs of an active snapshot or a view, as containerd's overlayfs snapshotter
 * gives them: a bind mount when there is one directory to show, an overlay otherwise.
 */
export function mounts(s: MountSubject): Mount[] {
  if (s.parentDirs.length === 0) {
    return [{ type: 'bind', source: s.dir, options: [s.kind === 'view' ? 'ro' : 'rw', 'rbind'] }];
  }
  if (s.kind !== 'active' && s.parentDirs.length === 1) {
    return [{ type: 'bind', source: s.parentDirs[0] as string, options: ['ro', 'rbind'] }];
  }
  const options = ['index=off'];
  if (s.kind === 'active') options.push(`workdir=${s.workDir}`, `upperdir=${s.dir}`);
  options.push(`lowerdir=${s.parentDirs.join(':')}`);
  return [{ type: 'overlay', source: 'overlay', options }];
}

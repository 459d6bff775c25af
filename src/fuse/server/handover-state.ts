// What one FUSE server tells the next about the mounts it hands over (the descriptors travel
// beside it): read from a child successor's stdin, or from a peer's socket. It comes from another
// process, so it is checked before anything of it is used.
import path from 'node:path';
import type { HandedMount } from '../mounts/handover.js';
import { scopeParam, type ServerScope } from './wire.js';

/** The mounts with the descriptor of each (as numbered where it is read), and the giver's scope. */
export interface HandoverState {
  mounts: HandedMount[];
  scope?: ServerScope;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const absolute = (v: unknown): boolean => typeof v === 'string' && path.isAbsolute(v) && !v.includes('\0');

/** Checks the shape of a handover state; throws saying what is wrong. */
export function checkHandoverState(v: unknown): HandoverState {
  if (!isObject(v) || !Array.isArray(v.mounts)) throw new Error('handover state has no mounts list');
  const scope = v.scope === undefined ? undefined : scopeParam({ scope: v.scope });
  v.mounts.forEach((m: unknown, i) => {
    const bad = (what: string): Error => new Error(`handover state: mount ${i} ${what}`);
    if (!isObject(m)) throw bad('is not an object');
    if (!absolute(m.mountpoint) || !absolute(m.layerDir)) throw bad('lacks an absolute mountpoint or layer directory');
    if (typeof m.fd !== 'number' || !Number.isSafeInteger(m.fd) || m.fd < 0) throw bad('lacks a descriptor');
    if (!isObject(m.nodes) || typeof m.nodes.next !== 'string' || !Array.isArray(m.nodes.nodes)) throw bad('lacks its node table');
    for (const k of ['detached', 'passthrough', 'xattrFree', 'resend'] as const) if (m[k] !== undefined && typeof m[k] !== 'boolean') throw bad(`has a ${k} that is not true or false`);
    if (m.files !== undefined && (!isObject(m.files) || typeof m.files.nextFh !== 'number' || !Array.isArray(m.files.files))) throw bad('has malformed passthrough files');
    if (m.location !== undefined) {
      const l = m.location;
      if (!isObject(l) || !absolute(l.trusted) || typeof l.relative !== 'string' || l.relative.startsWith('/') || l.relative.includes('\0')
        || l.relative.split('/').includes('..')) throw bad('has a malformed layer location');
    }
  });
  return { mounts: v.mounts as HandedMount[], ...(scope ? { scope } : {}) };
}

// The state one FUSE server sends the next with its mounts comes from another process (on
// Kubernetes, another pod): every field is checked before any of it is used.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkHandoverState } from '../../src/fuse/server/handover-state.js';

const mount = {
  mountpoint: '/r/snapshots/1/fs', layerDir: `/s/.layers/ab/${'ab'.repeat(32)}/layerfs`, fd: 0,
  nodes: { next: '3', nodes: [['2', '/d', 1]] }, detached: false,
  location: { trusted: '/s', relative: `.layers/ab/${'ab'.repeat(32)}/layerfs` },
};

test('a well-formed state passes, with its scope', () => {
  const s = checkHandoverState({ mounts: [mount, { ...mount, fd: 1, detached: true, passthrough: true, resend: true, files: { nextFh: 4, files: [] } }], scope: { root: '/r', store: '/s' } });
  assert.equal(s.mounts.length, 2);
  assert.equal(s.mounts[1]?.resend, true, 'whether the kernel can resend is carried over');
  assert.equal(s.mounts[0]?.resend, undefined, 'absent when the giver did not know');
  assert.deepEqual(s.scope, { root: '/r', store: '/s' });
  // An earlier version's state, without location or detached, is still read.
  const { location: _l, detached: _d, ...old } = mount;
  assert.equal(checkHandoverState({ mounts: [old] }).mounts.length, 1);
});

test('a malformed state is refused, saying which mount and what is wrong', () => {
  const bad: [string, unknown, RegExp][] = [
    ['no mounts list', {}, /no mounts list/],
    ['mounts not a list', { mounts: {} }, /no mounts list/],
    ['a mount that is a string', { mounts: ['x'] }, /mount 0 is not an object/],
    ['a relative mountpoint', { mounts: [{ ...mount, mountpoint: 'r/m' }] }, /mount 0 lacks an absolute mountpoint/],
    ['a mountpoint with NUL', { mounts: [mount, { ...mount, mountpoint: '/r/\0' }] }, /mount 1 lacks an absolute mountpoint/],
    ['a negative descriptor', { mounts: [{ ...mount, fd: -1 }] }, /lacks a descriptor/],
    ['a descriptor that is not an integer', { mounts: [{ ...mount, fd: 1.5 }] }, /lacks a descriptor/],
    ['no node table', { mounts: [{ ...mount, nodes: null }] }, /node table/],
    ['detached as a string', { mounts: [{ ...mount, detached: 'yes' }] }, /detached that is not true or false/],
    ['resend as a number', { mounts: [{ ...mount, resend: 1 }] }, /resend that is not true or false/],
    ['resend as null', { mounts: [{ ...mount, resend: null }] }, /resend that is not true or false/],
    ['a location that climbs out', { mounts: [{ ...mount, location: { trusted: '/s', relative: '../etc' } }] }, /malformed layer location/],
    ['an absolute relative location', { mounts: [{ ...mount, location: { trusted: '/s', relative: '/etc' } }] }, /malformed layer location/],
    ['malformed passthrough files', { mounts: [{ ...mount, files: { files: 3 } }] }, /malformed passthrough files/],
    ['a relative scope', { mounts: [], scope: { root: 'r', store: '/s' } }, /root must be an absolute path/],
  ];
  for (const [what, v, re] of bad) assert.throws(() => checkHandoverState(v), re, what);
});

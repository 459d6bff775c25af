// Values an attacker (or a confused client) would put into Snapshots requests. Each list mixes
// the plainly wrong with the nearly right, because the nearly right is what slips through.
import type { Rng } from '../rng.js';

export const LAYER_DIGEST_LABEL = 'containerd.io/snapshot/cri.layer-digest';
export const TARGET_REF_LABEL = 'containerd.io/snapshot.ref';
export const REMOTE_LABEL = 'containerd.io/snapshot/remote';

const HEX = '0123456789abcdef';

export function randomHex(rng: Rng, n: number): string {
  return rng.string(n, HEX);
}

/** Digests that must never name a directory: traversal, wrong alphabet, case, algorithm, length. */
export function hostileDigest(rng: Rng): string {
  const hex = randomHex(rng, 64);
  return rng.pick([
    'sha256:../../etc',
    'sha256:../../../../../../etc/passwd',
    'sha256:../' + hex.slice(3),
    'sha256:..',
    'sha256:/etc/passwd',
    `sha256:${hex.slice(0, 62)}/.`,
    `sha256:${hex}/../../etc`,
    `sha256:${hex}\0`,
    `sha256:${hex.slice(0, 32)}\0${hex.slice(33)}`,
    `sha256:${hex}\n`,
    ` sha256:${hex}`,
    'sha256:' + 'g'.repeat(64),
    'sha256:' + rng.string(64, 'ghijklmnopqrstuvwxyz-_./'),
    'sha256:' + hex.toUpperCase(),
    'sha256:' + hex.slice(0, 10).toUpperCase() + hex.slice(10),
    'SHA256:' + hex,
    'Sha256:' + hex,
    'sha512:' + randomHex(rng, 128),
    'sha384:' + randomHex(rng, 96),
    'md5:' + randomHex(rng, 32),
    'blake3:' + hex,
    'sha256:' + hex.slice(0, 63),
    'sha256:' + hex + 'a',
    'sha256:' + randomHex(rng, 128),
    'sha256:',
    'sha256',
    ':',
    '',
    hex,
    '../../etc',
    '/etc/passwd',
    'sha256:' + '０'.repeat(64),
    'sha256:' + 'a'.repeat(100_000),
  ]);
}

/** Snapshot keys and names that are invalid, path-like, huge, or plain odd. */
export function hostileKey(rng: Rng, known: readonly string[]): string {
  const base = known.length > 0 ? rng.pick(known) : 'fz/0/base';
  return rng.weighted<() => string>([
    [3, () => ''],
    [4, () => rng.pick(['\0', 'a\0b', 'fz/\0/x', base + '\0', '\0' + base, base.slice(0, 1) + '\0' + base.slice(1)])],
    [6, () => rng.pick(['../../x', '../../../../etc/passwd', '/etc/passwd', '.', '..', '/', '//', 'snapshots/1', '1', '../1',
      'metadata.db', '../metadata.db', '../../etc', 'fz/../../../x', './fz', '~/x', 'C:\\Windows', '\\\\server\\share'])],
    [3, () => rng.pick(['x'.repeat(4096), 'x'.repeat(4097), 'é'.repeat(2048), 'é'.repeat(2049), '😀'.repeat(1024), '😀'.repeat(1025)])],
    [1, () => 'k'.repeat(rng.pick([65_536, 1 << 20]))],
    [4, () => rng.pick(['\n', 'a\nb', '\r\n', '\t', ' ', '\u2028', '\uFEFFfz', '\u202Eevil', '😀', '\u0000\u0001\u0002', '\x7f', '\uFFFD'])],
    [3, () => rng.pick(["' OR '1'='1", "x'); DROP TABLE snapshots; --", '%s%s%n', '${jndi:ldap://x}', '$(touch /tmp/pwn)', '`id`', '"quoted"'])],
    [3, () => rng.pick(['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'prototype'])],
    [4, () => rng.pick([base + '/', base + ' ', ' ' + base, base.toUpperCase(), base + '\u0301', `${base}${base}`])],
    [2, () => `k8s.io/3/extract-${rng.int(1e9)}-x sha256:${randomHex(rng, 64)}`],
  ])();
}

export function hostileParent(rng: Rng, active: readonly string[], views: readonly string[], known: readonly string[]): string {
  return rng.weighted<() => string>([
    [3, () => (active.length > 0 ? rng.pick(active) : 'fz/none')],
    [2, () => (views.length > 0 ? rng.pick(views) : 'fz/none')],
    [3, () => `fz/missing/${rng.int(1e6)}`],
    [6, () => hostileKey(rng, known)],
  ])();
}

/** A label set that breaks a rule, or that tries to steer the remote-layer decision. */
export function hostileLabels(rng: Rng, presentDigests: readonly string[], trapDigests: readonly string[], known: readonly string[]): Record<string, string> {
  const target = `fz/target/${rng.int(1e9)}`;
  return rng.weighted<() => Record<string, string>>([
    [8, () => ({ [TARGET_REF_LABEL]: target, [LAYER_DIGEST_LABEL]: hostileDigest(rng) })],
    [3, () => ({ [LAYER_DIGEST_LABEL]: hostileDigest(rng) })],
    [4, () => ({ [TARGET_REF_LABEL]: target, [LAYER_DIGEST_LABEL]: rng.pick(trapDigests) })],
    [4, () => ({ [TARGET_REF_LABEL]: hostileKey(rng, known), [LAYER_DIGEST_LABEL]: rng.pick(presentDigests) })],
    [2, () => ({ [REMOTE_LABEL]: rng.pick([...presentDigests, 'sha256:../../etc']) })],
    [2, () => ({ [REMOTE_LABEL]: rng.pick(presentDigests), [TARGET_REF_LABEL]: target, [LAYER_DIGEST_LABEL]: hostileDigest(rng) })],
    [3, () => ({ 'fz/big': 'v'.repeat(rng.pick([4089, 4090, 4096, 8192, 65_536])) })],
    [1, () => ({ 'fz/huge': 'v'.repeat(1 << 20) })],
    [2, () => ({ ['k'.repeat(rng.pick([4096, 5000]))]: 'v' })],
    [2, () => manyLabels(rng.pick([100, 1000, 5000]))],
    [3, () => rng.pick<Record<string, string>>([{ '': 'x' }, { a: '' }, { 'a\0b': 'c' }, { a: 'b\0c' }, { '\n': '\n' }, { ['é'.repeat(3000)]: 'x' }])],
    [2, () => rng.pick<Record<string, string>>([{ hasOwnProperty: 'x' }, JSON.parse('{"__proto__":"x"}') as Record<string, string>, { constructor: 'x' }, { toString: 'x' }])],
  ])();
}

function manyLabels(n: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < n; i++) out[`fz.many/${i}`] = `value-${i}`;
  return out;
}

/** Filters that are malformed, or well formed and expensive. */
export function hostileFilter(rng: Rng): string {
  return rng.pick([
    'labels."unterminated==1', 'labels."bad\\qescape"==1', 'labels."a\\', '"', '`', "'",
    'name~=(a+)+$', 'name~=(.*a){25}', 'name~=^(a|a)*$', 'name~=(x+x+)+y', 'name~=(a|aa)+$', 'name~=([a-z]+)*!$',
    'name~=\\1(a)', 'name~=(?<=a)b', 'name~=[', 'name~=(', 'name~=a{1000000}', 'name~=a**', 'name~=(?P<n>a)',
    ',', ',,', '==', 'name==', 'name!=', 'name~=', '.', 'labels.', 'labels..x', 'a.b.c.d.e.f==1',
    'kind==active,', 'kind==active,,kind==view', ' ', '\0', 'name==\0', 'labels.\0==1', '\u00e9==\u00e9',
    'x'.repeat(100_000), 'name~=' + 'a'.repeat(5000), 'labels.' + 'a.'.repeat(2000) + 'b', 'name==' + 'x'.repeat(1 << 16),
    'kind==COMMITTED', 'kind==', 'parent!=""', 'labels."containerd.io/snapshot/remote"', 'name~=.*', 'name~=^$',
    'labels."containerd.io/snapshot.ref"==../../etc,parent==""', '!name', 'name===x', 'name=~x', 'name!==x', 'name == x',
  ]);
}

/** Update field paths: the allowed ones, and everything else containerd's API has or has not. */
export function hostileFieldPath(rng: Rng): string {
  return rng.pick([
    'parent', 'name', 'kind', 'created_at', 'updated_at', 'labels.', 'labels..', 'LABELS', 'Labels', 'labels.\0',
    'labels.__proto__', 'labels.constructor', '', ' ', '.labels', 'labels*', 'labels.a.b', 'info.labels', 'labels.' + 'x'.repeat(5000),
    'x'.repeat(100_000), '\0', 'labels\0',
  ]);
}

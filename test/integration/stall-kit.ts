// The layer and the readers of the stalled-store test, shared with bench/stall.ts so that the
// benchmark measures exactly what the test checks.
import fs from 'node:fs';
import path from 'node:path';
import { DEFAULT_TUNING } from '../../src/fuse/tuning.js';

export const LAYER_REL = `.layers/cd/${'cd'.repeat(32)}/layerfs`;
/** Entries of a wide layer's root and of its directory D. */
export const WIDE = 1000;
export const WIDE_DATA = 'served while the other layer is stalled\n';

export const entry = (i: number): string => `entry-${String(i).padStart(4, '0')}`;

/**
 * A layer whose root and whose directory D are both bigger than listDirBytes, so that the
 * server looks each name up in the store on its own (the names of a small directory are read
 * first, and every lookup in it then waits for that one listing). D/entry-NNNN holds NNNN
 * bytes; data.txt holds WIDE_DATA.
 */
export function writeWideLayer(dir: string): void {
  fs.mkdirSync(path.join(dir, 'D'), { recursive: true });
  for (let i = 0; i < WIDE; i++) {
    fs.writeFileSync(path.join(dir, `pad-${String(i).padStart(4, '0')}`), '');
    fs.writeFileSync(path.join(dir, 'D', entry(i)), 'x'.repeat(i));
  }
  fs.writeFileSync(path.join(dir, 'data.txt'), WIDE_DATA);
  for (const d of [dir, path.join(dir, 'D')]) {
    const size = fs.statSync(d).size;
    if (size <= DEFAULT_TUNING.listDirBytes) {
      throw new Error(`${d} is ${size} bytes, not more than listDirBytes (${DEFAULT_TUNING.listDirBytes}): the server would read its names before looking names up`);
    }
  }
}

/**
 * Looks up every path of a JSON list (one stdin line) on a thread of its own, so all of them
 * are in the kernel at once; prints "started", then "results" and one outcome per path.
 */
export const PARALLEL_LOOKUPS_PY = String.raw`
import errno, json, os, sys, threading
threading.stack_size(256 * 1024)
paths = json.loads(sys.stdin.readline())
results = [None] * len(paths)
def look(i):
    try:
        results[i] = 'size:%d' % os.lstat(paths[i]).st_size
    except OSError as e:
        results[i] = errno.errorcode.get(e.errno, str(e.errno))
threads = [threading.Thread(target=look, args=(i,)) for i in range(len(paths))]
for t in threads: t.start()
print('started', flush=True)
for t in threads: t.join()
print('results ' + json.dumps(results), flush=True)
`;

/**
 * argv: mount, n, prefix[, 'and-read']. Looks up n names D/<prefix>-NNNNN the layer does not
 * have, one after another, each timed here (nanoseconds); with 'and-read', then lists D and
 * reads data.txt. Prints "done" and a JSON object: lat, wrong (names that did not give ENOENT),
 * listed, sha (sha256 of data.txt).
 */
export const TIMED_LOOKUPS_PY = String.raw`
import errno, hashlib, json, os, sys, time
mnt, n, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
full = len(sys.argv) > 4 and sys.argv[4] == 'and-read'
lat, wrong = [], []
for i in range(n):
    p = os.path.join(mnt, 'D', '%s-%05d' % (prefix, i))
    t0 = time.perf_counter_ns()
    try:
        os.lstat(p)
        wrong.append([p, 'exists'])
    except OSError as e:
        if e.errno != errno.ENOENT: wrong.append([p, errno.errorcode.get(e.errno, str(e.errno))])
    lat.append(time.perf_counter_ns() - t0)
out = {'lat': lat, 'wrong': wrong}
if full:
    out['listed'] = len(os.listdir(os.path.join(mnt, 'D')))
    with open(os.path.join(mnt, 'data.txt'), 'rb') as f:
        out['sha'] = hashlib.sha256(f.read()).hexdigest()
print('done ' + json.dumps(out), flush=True)
`;

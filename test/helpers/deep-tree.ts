// A directory tree deeper than PATH_MAX (4,096 bytes): no path from its top names its bottom in
// one system call. python3 makes it by changing into each directory in turn (Node's fs names
// everything by its full path, and so cannot).
import { execOk } from '../../src/sys/exec.js';

/** The bottom directory holds a file, bottom-file, and a symlink to it, bottom-link. */
export interface DeepTree {
  /** The components from the top down, each DEEP_COMPONENT_BYTES long. */
  readonly components: readonly string[];
}

export const DEEP_COMPONENT_BYTES = 250;

const MAKE = String.raw`
import os, sys
top, depth, content = sys.argv[1], int(sys.argv[2]), sys.argv[3]
os.chdir(top)
names = []
for i in range(depth):
    n = ('d%03d-' % i).ljust(250, 'x')
    os.mkdir(n, 0o755)
    os.chdir(n)
    names.append(n)
with open('bottom-file', 'w') as f: f.write(content)
os.symlink('bottom-file', 'bottom-link')
print('\n'.join(names))
`;

/** Makes, under top (which exists), a chain of depth directories with bottom-file and bottom-link at the bottom. */
export async function makeDeepTree(top: string, depth: number): Promise<DeepTree> {
  const r = await execOk('/usr/bin/python3', ['-c', MAKE, top, String(depth), `the bottom of a tree ${depth} directories deep\n`]);
  return { components: r.stdout.trim().split('\n') };
}

const READ = String.raw`
import json, os, sys
os.chdir(sys.argv[1])
for n in sys.argv[2:]: os.chdir(n)
st = os.lstat('bottom-file')
print(json.dumps({'names': sorted(os.listdir('.')), 'content': open('bottom-file').read(), 'link': os.readlink('bottom-link'),
  'size': st.st_size, 'mode': st.st_mode, 'ino': st.st_ino, 'depth_bytes': len(os.getcwd())}))
`;

export interface DeepBottom {
  names: string[];
  content: string;
  link: string;
  size: number;
  mode: number;
  ino: number;
  /** The length of the bottom directory's absolute path, as the reader's getcwd says. */
  depth_bytes: number;
}

/** What a reader that changes into each directory in turn sees at the bottom of the tree under top. */
export async function readDeepBottom(top: string, tree: DeepTree): Promise<DeepBottom> {
  const r = await execOk('/usr/bin/python3', ['-c', READ, top, ...tree.components]);
  return JSON.parse(r.stdout) as DeepBottom;
}

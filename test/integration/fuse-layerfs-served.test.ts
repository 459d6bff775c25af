// The layer filesystem with reads served by the server (a kernel without passthrough, or a
// store the kernel refuses to stack on).
import { layerfsSuite } from './fuse-layerfs-suite.js';

layerfsSuite(false);

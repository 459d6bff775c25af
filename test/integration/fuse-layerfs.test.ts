// The layer filesystem with FUSE passthrough: the kernel reads the store's files itself.
import { layerfsSuite } from './fuse-layerfs-suite.js';

layerfsSuite(true);

// The rooms of src/ and what each may import: the rules of README.md's "Architecture" section,
// checked by test/unit/architecture.test.ts (part of `npm test`). By hand:
//   npx depcruise --config .dependency-cruiser.cjs src
// Every import in src/ must match one of the `allowed` rules below; anything else, and any
// import cycle, is a violation. Change a rule here and in the README together.

// A room is a folder; src/fuse/kernel and src/fuse/server are rooms of their own inside src/fuse.
const ROOMS = {
  snapshotter: '^src/snapshotter/',
  remote: '^src/remote/',
  fuseKernel: '^src/fuse/kernel/',
  fuse: '^src/fuse/(?!kernel/|server/)',
  fuseServer: '^src/fuse/server/',
  cache: '^src/cache/',
  layers: '^src/layers/',
  server: '^src/server/',
  metrics: '^src/metrics/',
  sys: '^src/sys/',
  cli: '^src/cli/',
};

// The ground floor every room stands on: typed errors, the logger, and src/sys (one module per
// kind of side effect: spawn, mount, sockets, du, the native addon).
const GROUND = ['^src/(errors|log)\\.ts$', ROOMS.sys];

const TYPES_ONLY = ['type-only'];

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'No import cycle anywhere in src, type-only imports and dynamic import() included.',
      from: { path: '^src/' },
      to: { circular: true },
    },
  ],
  allowedSeverity: 'error',
  allowed: [
    { comment: 'Node built-ins', from: { path: '^src/' }, to: { dependencyTypes: ['core'] } },
    {
      comment: 'runtime dependencies of package.json (a devDependency is not there when installed with --omit=dev)',
      from: { path: '^src/' },
      to: { dependencyTypes: ['npm'] },
    },
    { comment: 'the ground floor (errors, log, sys) is open to every room', from: { path: '^src/' }, to: { path: GROUND } },

    // Within a room, anything goes.
    ...Object.entries(ROOMS).map(([name, path]) => ({ comment: `inside ${name}`, from: { path }, to: { path } })),

    {
      comment: 'the remote room implements the snapshotter\'s RemoteLayers with the layer store and the FUSE server\'s client',
      from: { path: ROOMS.remote },
      to: { path: ['^src/snapshotter/(remote|types|labels)\\.ts$', ROOMS.layers, '^src/fuse/server/(client|wire)\\.ts$'] },
    },
    {
      comment: 'the remote room knows the FUSE layer only by its types (LayerMounter and what it reports)',
      from: { path: ROOMS.remote },
      to: { path: ROOMS.fuse, dependencyTypes: TYPES_ONLY },
    },
    {
      comment: 'the transport reports to the FUSE observer interface',
      from: { path: ROOMS.fuseKernel },
      to: { path: '^src/fuse/observer\\.ts$', dependencyTypes: TYPES_ONLY },
    },
    { comment: 'the FUSE layer: the kernel protocol below it, the caches', from: { path: ROOMS.fuse }, to: { path: [ROOMS.fuseKernel, ROOMS.cache] } },
    {
      comment: 'the FUSE server process: the FUSE layer, the caches, the registry of its metrics, the unix-socket setup',
      from: { path: ROOMS.fuseServer },
      to: { path: [ROOMS.fuse, ROOMS.cache, ROOMS.metrics, '^src/server/socket\\.ts$'] },
    },
    { comment: 'the gRPC adapter calls the snapshotter', from: { path: ROOMS.server }, to: { path: ROOMS.snapshotter } },
    {
      comment: 'metrics know the other rooms through the observer interfaces and the types they carry',
      from: { path: ROOMS.metrics },
      to: { path: '^src/', dependencyTypes: TYPES_ONLY },
    },
    {
      comment: 'metrics count the remote decisions by the reason codes the decision carries',
      from: { path: ROOMS.metrics },
      to: { path: [ROOMS.remote, '^src/snapshotter/remote\\.ts$'] },
    },
    { comment: 'the commands are the composition roots', from: { path: ROOMS.cli }, to: { path: '^src/' } },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // See `import type` (erased by tsc, still a dependency of the design).
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      mainFields: ['main', 'types', 'typings'],
    },
  },
};

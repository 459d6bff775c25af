// Loads the .proto files in proto/ at run time; the wire format lives there, not in code.
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { loadSync, type Options } from '@grpc/proto-loader';
import { loadPackageDefinition, type GrpcObject, type ServiceClientConstructor } from '@grpc/grpc-js';

/** proto/ at the package root: dist/src/server/ is three levels below it. */
export const PROTO_DIR = fileURLToPath(new URL('../../../proto/', import.meta.url));

export const LOADER_OPTIONS: Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  arrays: true,
  objects: true,
};

function lookup(root: GrpcObject, path: string): ServiceClientConstructor {
  let node: unknown = root;
  for (const part of path.split('.')) node = (node as Record<string, unknown>)[part];
  if (typeof node !== 'function') throw new Error(`service ${path} not found in the proto definitions`);
  return node as ServiceClientConstructor;
}

export function loadService(file: string, servicePath: string): ServiceClientConstructor {
  const def = loadSync(join(PROTO_DIR, file), { ...LOADER_OPTIONS, includeDirs: [join(PROTO_DIR, 'containerd'), PROTO_DIR] });
  return lookup(loadPackageDefinition(def), servicePath);
}

export function snapshotsService(): ServiceClientConstructor {
  return loadService('containerd/snapshots.proto', 'containerd.services.snapshots.v1.Snapshots');
}

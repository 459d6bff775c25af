// Where things live by default. Apart from config.ts so that a command can name a default path
// without loading the TOML parser.
export const DEFAULT_CONFIG_PATH = '/etc/containerd-cvmfs-grpc/config.toml';
export const DEFAULT_ADDRESS = '/run/containerd-cvmfs-grpc/containerd-cvmfs-grpc.sock';
/** The FUSE server's control socket, beside the daemon's (see src/fuse/server). */
export const DEFAULT_FUSE_SOCKET = '/run/containerd-cvmfs-grpc/fuse-server.sock';
export const DEFAULT_ROOT = '/var/lib/containerd-cvmfs-grpc';
export const DEFAULT_REPOSITORY = 'unpacked.cern.ch';

// The command line: the daemon by default, or a subcommand.
import { version } from './build-info.js';
import { DAEMON_USAGE, parseDaemonArgs } from './daemon-args.js';

type Command = (args: string[]) => Promise<number>;

const COMMANDS: Record<string, { summary: string; load: () => Promise<Command> }> = {
  ingest: {
    summary: 'copy images from a registry into a layer store, in DUCC\'s layout',
    load: async () => (await import('./ingest.js')).ingestCommand,
  },
  pull: {
    summary: 'pull an image lazily through containerd\'s CRI',
    load: async () => (await import('./pull.js')).pullCommand,
  },
  'fuse-server': {
    summary: 'serve the layer mounts (started by the daemon; --handover upgrades it, --stop takes all layers down)',
    load: async () => (await import('./fuse-server.js')).fuseServerCommand,
  },
  doctor: {
    summary: 'check this node and containerd\'s config for what the snapshotter needs',
    load: async () => (await import('./doctor.js')).doctorCommand,
  },
};

function usage(): string {
  const cmds = Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(10)} ${c.summary}`).join('\n');
  return cmds ? `${DAEMON_USAGE}\nCommands:\n${cmds}\n  (run "cvmfs-snapshotter COMMAND --help" for a command's options)\n` : DAEMON_USAGE;
}

export async function main(argv: string[]): Promise<number> {
  const first = argv[0];
  if (first !== undefined && !first.startsWith('-')) {
    const cmd = COMMANDS[first];
    if (!cmd) {
      process.stderr.write(`cvmfs-snapshotter: unknown command "${first}"\n\n${usage()}`);
      return 2;
    }
    return (await cmd.load())(argv.slice(1));
  }
  let opts;
  try {
    opts = parseDaemonArgs(argv);
  } catch (err) {
    process.stderr.write(`cvmfs-snapshotter: ${(err as Error).message}\n\n${usage()}`);
    return 2;
  }
  if (opts === 'help') { process.stdout.write(usage()); return 0; }
  if (opts === 'version') { process.stdout.write(`cvmfs-snapshotter ${version()}\n`); return 0; }
  // The daemon's modules (gRPC, SQLite, the snapshotter) are loaded only to run it.
  const { runDaemon } = await import('./daemon.js');
  return runDaemon(opts, version());
}

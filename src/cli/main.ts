// The command line: the daemon by default, or a subcommand.
import { version } from './build-info.js';

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

// The daemon's options are loaded only when no command is named: they bring the logger along.
async function usage(): Promise<string> {
  const { DAEMON_USAGE } = await import('./daemon-args.js');
  const cmds = Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(10)} ${c.summary}`).join('\n');
  return cmds ? `${DAEMON_USAGE}\nCommands:\n${cmds}\n  (run "cvmfs-snapshotter COMMAND --help" for a command's options)\n` : DAEMON_USAGE;
}

export async function main(argv: string[]): Promise<number> {
  const first = argv[0];
  if (first !== undefined && !first.startsWith('-')) {
    const cmd = COMMANDS[first];
    if (!cmd) {
      process.stderr.write(`cvmfs-snapshotter: unknown command "${first}"\n\n${await usage()}`);
      return 2;
    }
    return (await cmd.load())(argv.slice(1));
  }
  const { parseDaemonArgs } = await import('./daemon-args.js');
  let opts;
  try {
    opts = parseDaemonArgs(argv);
  } catch (err) {
    process.stderr.write(`cvmfs-snapshotter: ${(err as Error).message}\n\n${await usage()}`);
    return 2;
  }
  if (opts === 'help') { process.stdout.write(await usage()); return 0; }
  if (opts === 'version') { process.stdout.write(`cvmfs-snapshotter ${version()}\n`); return 0; }
  // The daemon's modules (gRPC, SQLite, the snapshotter) are loaded only to run it.
  const { runDaemon } = await import('./daemon.js');
  return runDaemon(opts, version());
}

// `cvmfs-snapshotter doctor`: checks the node and says, one line per finding, what is wrong and
// what to do. The checks are pure functions over facts (src/cli/doctor/); gathering the facts is
// the only I/O.
import { release } from 'node:os';
import { parseCommand, usageError } from './args.js';
import { DEFAULT_ADDRESS, DEFAULT_CONFIG_PATH, DEFAULT_ROOT } from './defaults.js';
import { analyzeContainerdConfig, checkContainerdBinary } from './doctor/containerd-config.js';
import { checkDaemon, checkRoot } from './doctor/daemon.js';
import { exitCode, formatFinding, type Finding } from './doctor/findings.js';
import {
  canonicalSocketPath, gatherConfig, gatherContainerdBinary, gatherContainerdConfig, gatherDaemon, gatherDevFuse,
  gatherFilesystems, gatherLib, gatherRoot, probeStore,
} from './doctor/gather.js';
import { checkDevFuse, checkFilesystem, checkKernel, checkLibfuse, checkUser } from './doctor/host.js';
import { checkConfig, checkStore } from './doctor/store.js';
import { checkReadMode } from './doctor/read-mode.js';
import { probeReadMode } from './doctor/read-mode-probe.js';

export const DEFAULT_CONTAINERD_CONFIG = '/etc/containerd/config.toml';

const USAGE = `Usage: cvmfs-snapshotter doctor [options]

Checks this node for what the snapshotter needs: /dev/fuse and libfuse2, overlayfs and the
kernel, whether layer files are read through FUSE passthrough (a probe mount, as root), the
config and the layer store, containerd's config (the proxy plugin and the CRI
settings), the daemon's socket and root. Prints one line per finding (ok, warn, FAIL) with what
to do; exits 1 if anything failed, 0 otherwise (warnings alone do not fail).

Options:
  --config FILE             the snapshotter's config (default ${DEFAULT_CONFIG_PATH})
  --containerd-config FILE  containerd's config (default ${DEFAULT_CONTAINERD_CONFIG})
  --address SOCK            the daemon's socket (default ${DEFAULT_ADDRESS})
  --root DIR                the daemon's root (default ${DEFAULT_ROOT})
  --json                    print {"ok": bool, "findings": [{check, level, subject, message}]}
  -h, --help                this text
`;

export interface DoctorOptions {
  configPath: string;
  configRequired: boolean;
  containerdConfig: string;
  address: string;
  root: string;
}

export async function runChecks(o: DoctorOptions): Promise<Finding[]> {
  const config = await gatherConfig(o.configPath, o.configRequired);
  const [devFuse, lib, filesystems, store, ctdConfig, ctdBinary, daemon, root] = await Promise.all([
    gatherDevFuse(),
    gatherLib('libfuse.so.2'),
    gatherFilesystems(['overlay', 'fuse']),
    config.state === 'ok' ? probeStore(config.storeRoot) : undefined,
    gatherContainerdConfig(o.containerdConfig),
    gatherContainerdBinary(),
    gatherDaemon(o.address),
    gatherRoot(o.root),
  ]);
  // After the store probe: a file of its sample layer shows whether the kernel passes reads through.
  const readMode = await probeReadMode({
    enabled: config.state === 'ok' ? config.fusePassthrough : true,
    ...(config.state === 'ok' ? { store: config.storeRoot } : {}),
    ...(store?.state === 'layer' ? { sampleLayer: store.path } : {}),
  });
  return [
    checkUser(process.getuid?.() ?? -1),
    checkDevFuse(devFuse),
    checkLibfuse(lib),
    ...filesystems.map(checkFilesystem),
    checkKernel(release()),
    checkReadMode(readMode, release()),
    checkConfig(config),
    ...(store ? checkStore(config, store) : []),
    checkContainerdBinary(ctdBinary),
    ...analyzeContainerdConfig({ facts: ctdConfig, address: o.address, canonical: canonicalSocketPath, binary: ctdBinary }),
    ...checkDaemon(daemon),
    checkRoot(root),
  ];
}

export async function doctorCommand(args: string[]): Promise<number> {
  const parsed = parseCommand('doctor', USAGE, args, {
    config: { type: 'string' },
    'containerd-config': { type: 'string', default: DEFAULT_CONTAINERD_CONFIG },
    address: { type: 'string', default: DEFAULT_ADDRESS },
    root: { type: 'string', default: DEFAULT_ROOT },
    json: { type: 'boolean', default: false },
  });
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  if (positionals.length > 0) return usageError('doctor', `unexpected argument "${positionals[0]}"`);
  const findings = await runChecks({
    configPath: values.config ?? DEFAULT_CONFIG_PATH,
    configRequired: values.config !== undefined,
    containerdConfig: values['containerd-config'],
    address: values.address,
    root: values.root,
  });
  const code = exitCode(findings);
  if (values.json) process.stdout.write(`${JSON.stringify({ ok: code === 0, findings }, null, 2)}\n`);
  else process.stdout.write(findings.map((f) => `${formatFinding(f)}\n`).join(''));
  return code;
}

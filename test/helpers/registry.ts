// A private docker-registry (distribution 2.x) on 127.0.0.1, plain HTTP, storage in the scope.
import { writeFile } from 'node:fs/promises';
import { ManagedProcess } from './process.js';
import { freePort } from './ports.js';
import type { Scope } from './scope.js';
import { httpOk, waitUntil } from './wait.js';

export interface Registry {
  /** host:port, the prefix of image references, e.g. 127.0.0.1:40123 */
  host: string;
  /** http://host:port */
  url: string;
  process: ManagedProcess;
  stop(): Promise<void>;
}

function registryConfig(storageDir: string, port: number): string {
  // YAML; JSON is valid YAML, which keeps quoting right for any path.
  return JSON.stringify({
    version: 0.1,
    log: { level: 'warn', accesslog: { disabled: true } },
    storage: { filesystem: { rootdirectory: storageDir }, delete: { enabled: true } },
    http: { addr: `127.0.0.1:${port}` },
  }, null, 2);
}

export async function startRegistry(scope: Scope, name = 'registry'): Promise<Registry> {
  const dir = await scope.mkdir(name);
  const storage = await scope.mkdir(name, 'storage');
  // A port can be taken between freePort() and the registry's bind; try a few.
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const configFile = `${dir}/config.yml`;
    await writeFile(configFile, registryConfig(storage, port));
    const proc = await ManagedProcess.start({ name, cmd: 'docker-registry', args: ['serve', configFile], logFile: `${dir}/registry.log` });
    const url = `http://127.0.0.1:${port}`;
    try {
      await waitUntil(() => httpOk(`${url}/v2/`), { what: `${name} at ${url}`, process: proc, timeoutMs: 15_000 });
    } catch (err) {
      await proc.stop(2_000);
      if (attempt < 3 && /address already in use/.test(proc.log())) continue;
      throw err;
    }
    const stop = async (): Promise<void> => { await proc.stop(5_000); };
    scope.defer(`stop ${name}`, stop);
    return { host: `127.0.0.1:${port}`, url, process: proc, stop };
  }
}

// The wire of the handover between FUSE servers of different pods, at the scale of a node with
// many layers: more descriptors than one message carries (250) and a state of megabytes, sent by
// the project's PeerGiver to the project's PeerTaker in another process. And a giver that lies
// (fewer descriptors than it announced, descriptors that are not /dev/fuse): the taker refuses,
// says why, and keeps none of what it received. /dev/fuse descriptors opened without a mount
// are real ones for these checks (needs root, as every integration test).
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import readline from 'node:readline';
import { PeerGiver } from '../../src/fuse/server/peer-handover.js';
import type { HandedMount } from '../../src/fuse/mounts/handover.js';
import { silentLogger } from '../../src/log.js';
import { connectSeqpacket, native, receiveWithFds, sendWithFds } from '../../src/sys/native.js';
import { Scope } from '../helpers/scope.js';

let scope: Scope;
let runDir = '';

before(async () => {
  scope = await Scope.create('peer-proto');
  runDir = await scope.mkdir('run');
  fs.chmodSync(runDir, 0o700);
});
after(async () => { await scope?.teardown(); });

interface TakerReport {
  error?: string;
  /** /dev/fuse and /dev/null descriptors the taker still held after it refused. */
  leftover?: number;
  count?: number;
  mountpoints?: string[];
  allFuse?: boolean;
  distinct?: number;
  nodes?: number;
  detached?: number;
  giver?: { pid: number; host: string };
}

/** The project's PeerTaker in a child process: it reports what it received, says ready and serving. */
function runTaker(socket: string): Promise<TakerReport> {
  const mod = new URL('../../src/fuse/server/peer-handover.js', import.meta.url).href;
  const logmod = new URL('../../src/log.js', import.meta.url).href;
  const code = `
    import fs from 'node:fs';
    import { PeerTaker } from ${JSON.stringify(mod)};
    import { silentLogger } from ${JSON.stringify(logmod)};
    const held = () => fs.readdirSync('/proc/self/fd').filter((fd) => {
      try { return ['/dev/fuse', '/dev/null'].includes(fs.readlinkSync('/proc/self/fd/' + fd)); } catch { return false; }
    }).length;
    // stdin is /dev/null already: only what arrives counts.
    const base = held();
    let t;
    try {
      t = await PeerTaker.ask(process.argv[1], undefined, silentLogger());
    } catch (err) {
      process.stdout.write(JSON.stringify({ error: err.message, leftover: held() - base }) + '\\n');
      process.exit(0);
    }
    const ms = t.received.state.mounts;
    const report = {
      count: ms.length, mountpoints: ms.map((m) => m.mountpoint),
      allFuse: ms.every((m) => fs.readlinkSync('/proc/self/fd/' + m.fd) === '/dev/fuse'),
      distinct: new Set(ms.map((m) => m.fd)).size, nodes: ms.reduce((a, m) => a + m.nodes.nodes.length, 0),
      detached: ms.filter((m) => m.detached).length, giver: t.received.giver,
    };
    await t.ready();
    await t.serving();
    process.stdout.write(JSON.stringify(report) + '\\n');
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code, socket], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr?.on('data', (d: Buffer) => { err += d.toString(); });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (d: Buffer) => { out += d.toString(); });
    child.on('exit', (c) => {
      try {
        resolve(JSON.parse(out) as TakerReport);
      } catch {
        reject(new Error(`the taker exited ${String(c)} without a report: ${out} ${err}`));
      }
    });
  });
}

/** A control socket that answers handoverTo by running give(socket) and answering what it returns. */
async function controlServer(name: string, give: (socket: string) => Promise<unknown>): Promise<{ socket: string; close(): void }> {
  const socket = join(runDir, `${name}.sock`);
  const server = net.createServer((c) => {
    // The taker hangs up once it has what it wants.
    c.on('error', () => undefined);
    const rl = readline.createInterface({ input: c });
    rl.on('error', () => undefined);
    rl.on('line', (line) => {
      const req = JSON.parse(line) as { id: number; method: string; params: { socket: string } };
      give(req.params.socket).then((result) => c.write(`${JSON.stringify({ id: req.id, result })}\n`),
        (err: unknown) => c.write(`${JSON.stringify({ id: req.id, error: { kind: 'Internal', message: (err as Error).message } })}\n`));
    });
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  return { socket, close: () => server.close() };
}

function handedMounts(n: number, fds: number[]): HandedMount[] {
  return fds.slice(0, n).map((fd, i) => ({
    mountpoint: `/var/lib/containerd-cvmfs-grpc/snapshots/${i}/fs`,
    layerDir: `/cvmfs/unpacked.cern.ch/.layers/ab/${'ab'.repeat(32)}/layerfs`,
    fd,
    // A layer whose tree the kernel knows well: 100 nodes with long paths each.
    nodes: { next: '1000', nodes: Array.from({ length: 100 }, (_x, k) => [String(k + 2), `/usr/share/some/rather/long/path/to/file-${i}-${k}`, 1] as const) },
    detached: i % 10 === 0,
  }));
}

test('1,000 mounts go over: four descriptor messages, megabytes of state, every descriptor /dev/fuse on arrival', async (t) => {
  const fds = Array.from({ length: 1000 }, () => fs.openSync('/dev/fuse', 'r+'));
  const handed = handedMounts(1000, fds);
  let took = 0;
  const giver = new PeerGiver(silentLogger());
  const control = await controlServer('many', async (socket) => {
    const t0 = process.hrtime.bigint();
    await giver.send(socket, handed, undefined, 'test');
    const servedBy = await giver.commit();
    took = Number(process.hrtime.bigint() - t0) / 1e6;
    giver.close();
    return servedBy;
  });
  try {
    const r = await runTaker(control.socket);
    assert.equal(r.error, undefined);
    assert.equal(r.count, 1000);
    assert.deepEqual(r.mountpoints, handed.map((m) => m.mountpoint), 'in order');
    assert.equal(r.allFuse, true, 'every descriptor is /dev/fuse in the taker');
    assert.equal(r.distinct, 1000, 'each mount has its own descriptor');
    assert.equal(r.nodes, 100_000, 'every node table arrived whole');
    assert.equal(r.detached, 100, 'detached mounts are still detached');
    assert.equal(r.giver?.pid, process.pid);
    t.diagnostic(`1000 descriptors and ${(JSON.stringify(handed).length / 1e6).toFixed(1)} MB of state handed over in ${took.toFixed(0)} ms (taker in another process, 2 shared cores)`);
  } finally {
    control.close();
    for (const fd of fds) fs.closeSync(fd);
  }
});

/** A giver that speaks the wire by hand, to lie. */
function lyingGiver(lie: 'fewer' | 'not-fuse'): (socket: string) => Promise<unknown> {
  return async (socket) => {
    const fd = connectSeqpacket(socket, 5000);
    const dev = fs.openSync(lie === 'not-fuse' ? '/dev/null' : '/dev/fuse', 'r+');
    try {
      const mounts = handedMounts(3, [0, 1, 2]);
      const state = Buffer.from(JSON.stringify({ mounts }));
      const send = (o: unknown, fds: number[] = []): Promise<void> => sendWithFds(fd, Buffer.from(JSON.stringify(o)), fds, 5000);
      await send({ kind: 'begin', pid: process.pid, host: 'liar', version: 'test', mounts: 3, stateBytes: state.length });
      // 'fewer': the message says 3 and carries 2.
      await send({ kind: 'fds', first: 0, count: 3 }, lie === 'fewer' ? [dev, dev] : [dev, dev, dev]);
      if (lie === 'not-fuse') await sendWithFds(fd, Buffer.concat([Buffer.from('S'), state]), [], 5000);
      const m = await receiveWithFds(fd, 65536, 0, 10_000);
      return m === 'closed' ? 'closed' : JSON.parse(m.data.toString()) as unknown;
    } finally {
      fs.closeSync(dev);
      native.closeFd(fd);
    }
  };
}

for (const lie of ['fewer', 'not-fuse'] as const) {
  test(`a giver that sends ${lie === 'fewer' ? 'fewer descriptors than a message says' : 'descriptors that are not /dev/fuse'} is refused, told why, and the taker keeps none`, async () => {
    let told: unknown;
    const give = lyingGiver(lie);
    const control = await controlServer(lie, async (socket) => { told = await give(socket); return null; });
    try {
      const r = await runTaker(control.socket);
      assert.match(r.error ?? '', lie === 'fewer' ? /descriptor message out of order/ : /is not \/dev\/fuse/);
      assert.equal(r.leftover, 0, 'the taker closed every descriptor it received');
      assert.equal((told as { kind?: string }).kind, 'refused', 'the giver is told');
      assert.match((told as { reason?: string }).reason ?? '', lie === 'fewer' ? /out of order/ : /not \/dev\/fuse/);
    } finally {
      control.close();
    }
  });
}

// Proves the guest assets of scripts/vm/build-guest.sh boot and answer: boots them under QEMU
// (microVM, TCG) through a qcow2 overlay, as the runtime does, talks to qemu-ga over its
// virtio-serial socket (guest-sync, guest-ping, guest-exec of a shell line that sets the
// identity, as the runtime does through the agent, and prints it), checks the answer, and quits
// through QMP. The kernel is booted, never held (no snapfork.hold). Each boot
// prints the time from launch to the first guest-ping answer; several boots print the median.
//
//   node scripts/vm/smoke.js [boots=1]        assets from SNAPFORK_VM_ASSETS or storage/vm-assets
//
// Plain JavaScript so it runs with no build step; it uses nothing but Node itself.
import { Buffer } from 'node:buffer';
import { spawn, execFileSync } from 'node:child_process';
import console from 'node:console';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import process from 'node:process';
import { clearTimeout, setTimeout } from 'node:timers';
import { fileURLToPath } from 'node:url';

const project = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const assets = process.env.SNAPFORK_VM_ASSETS ?? join(project, 'storage/vm-assets');
const AGENT_PORT = 'org.qemu.guest_agent.0';
const BOOT_TIMEOUT_MS = 30_000;

// Under TCG the guest's TSC runs at the host's rate; telling the kernel skips a calibration
// that hangs some boots.
function hostKhz() {
  const mhz = /^cpu MHz\s*:\s*([\d.]+)/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
  if (!mhz) throw new Error('no "cpu MHz" in /proc/cpuinfo');
  return Math.round(Number(mhz[1]) * 1000);
}

function sleep(ms) {
  return new Promise((done) => setTimeout(done, ms));
}

/** A connection to a QEMU Unix socket (QGA or QMP) speaking one JSON document per line. */
class JsonLineSocket {
  static async open(path, deadline) {
    for (;;) {
      try {
        return await new Promise((ok, fail) => {
          const socket = connect(path, () => ok(new JsonLineSocket(socket)));
          socket.once('error', fail);
        });
      } catch (err) {
        // QEMU creates the socket shortly after it starts.
        if (!['ENOENT', 'ECONNREFUSED'].includes(err.code) || Date.now() > deadline) throw err;
        await sleep(5);
      }
    }
  }

  constructor(socket) {
    this.socket = socket;
    this.buffered = '';
    this.messages = [];
    this.waiter = null;
    socket.setEncoding('utf8');
    socket.on('data', (text) => {
      this.buffered += text;
      let newline;
      while ((newline = this.buffered.indexOf('\n')) >= 0) {
        const line = this.buffered.slice(0, newline).trim();
        this.buffered = this.buffered.slice(newline + 1);
        if (line) this.messages.push(JSON.parse(line));
      }
      this.waiter?.();
    });
    socket.on('error', () => this.waiter?.());
    socket.on('close', () => this.waiter?.());
  }

  send(execute, args) {
    this.socket.write(JSON.stringify(args ? { execute, arguments: args } : { execute }) + '\n');
  }

  /** The next message, or null when none came within `ms`. */
  async next(ms) {
    const until = Date.now() + ms;
    while (this.messages.length === 0) {
      if (this.socket.destroyed) throw new Error('the socket closed');
      const left = until - Date.now();
      if (left <= 0) return null;
      await new Promise((woken) => {
        const timer = setTimeout(woken, left);
        this.waiter = () => {
          clearTimeout(timer);
          woken();
        };
      });
      this.waiter = null;
    }
    return this.messages.shift();
  }

  /** Sends a command and returns its answer's `return`; an `error` answer throws. */
  async call(execute, args, ms = 10_000) {
    this.send(execute, args);
    for (;;) {
      const message = await this.next(ms);
      if (message === null) throw new Error(`${execute}: no answer in ${ms} ms`);
      if ('error' in message) throw new Error(`${execute}: ${JSON.stringify(message.error)}`);
      if ('return' in message) return message.return;
      // QMP events and greetings are not answers.
    }
  }

  close() {
    this.socket.destroy();
  }
}

/**
 * Until the agent runs, what is written to its socket waits in QEMU; a guest-sync with a fresh
 * id, answered with that id, marks where the answers to our own commands begin (the protocol's
 * way to skip stale output). Resent each second in case the agent missed one mid-start.
 */
async function syncAgent(qga, deadline) {
  for (;;) {
    const id = randomBytes(4).readUInt32BE() & 0x7fffffff;
    qga.send('guest-sync', { id });
    const resend = Date.now() + 1000;
    while (Date.now() < resend) {
      const message = await qga.next(resend - Date.now());
      if (message?.return === id) return;
    }
    if (Date.now() > deadline) throw new Error('the guest agent never answered guest-sync');
  }
}

async function bootOnce(khz) {
  const dir = mkdtempSync(join(tmpdir(), 'snapfork-smoke-'));
  const machineId = randomBytes(16).toString('hex');
  const hostname = 'h1';
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', join(assets, 'rootfs.img'), join(dir, 'overlay.qcow2')]);
  const append = ['console=ttyS0 quiet panic=-1', `tsc_early_khz=${khz} tsc=reliable cryptomgr.notests rodata=off`].join(' ');
  const started = performance.now();
  const qemu = spawn(
    'qemu-system-x86_64',
    [
      ...['-M', 'microvm', '-accel', 'tcg', '-cpu', 'qemu64', '-m', '256', '-smp', '1'],
      ...['-nodefaults', '-no-user-config', '-nographic', '-no-reboot'],
      ...['-kernel', join(assets, 'vmlinux'), '-initrd', join(assets, 'initrd.cpio'), '-append', append],
      ...['-drive', `id=root,if=none,format=qcow2,file=${join(dir, 'overlay.qcow2')}`],
      ...['-device', 'virtio-blk-device,drive=root'],
      ...['-device', 'virtio-serial-device'],
      ...['-chardev', `socket,id=qga,path=${join(dir, 'qga.sock')},server=on,wait=off`],
      ...['-device', `virtserialport,chardev=qga,name=${AGENT_PORT}`],
      ...['-qmp', `unix:${join(dir, 'qmp.sock')},server=on,wait=off`],
      ...['-serial', `file:${join(dir, 'serial.log')}`],
    ],
    { detached: true, stdio: ['ignore', 'ignore', 'inherit'] },
  );
  let exited = false;
  const exit = new Promise((done) => {
    qemu.once('exit', (code, signal) => done((exited = true, `exit ${signal ?? code}`)));
    qemu.once('error', (err) => done((exited = true, err.message)));
  });
  // A boot that fails ends QEMU (panic=-1 with -no-reboot): fail then, not at the timeout.
  const died = exit.then((how) => {
    throw new Error(`QEMU ended during the smoke test (${how})`);
  });
  const deadline = Date.now() + BOOT_TIMEOUT_MS;
  const sockets = [];
  try {
    const talking = talkToAgent(dir, sockets, deadline, started, { hostname, machineId });
    talking.catch(() => {}); // when QEMU died first, its failure is the one reported
    const { pingMs, stdout } = await Promise.race([talking, died]);
    const expected = `hello\n${hostname}\n${machineId}\n`;
    if (stdout !== expected) throw new Error(`guest-exec printed ${JSON.stringify(stdout)}, not ${JSON.stringify(expected)}`);

    const qmp = await JsonLineSocket.open(join(dir, 'qmp.sock'), deadline);
    sockets.push(qmp);
    await qmp.call('qmp_capabilities');
    qmp.send('quit');
    await exit;
    return { pingMs, stdout };
  } catch (err) {
    const serial = existsSync(join(dir, 'serial.log')) ? readFileSync(join(dir, 'serial.log'), 'utf8') : '';
    if (exited) err.message += ' (QEMU has ended)';
    err.message += `\n--- serial console ---\n${serial.slice(-4000)}`;
    throw err;
  } finally {
    for (const socket of sockets) socket.close();
    if (!exited) process.kill(-qemu.pid, 'SIGKILL'); // its own process group: nothing outlives us
    await exit;
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * guest-sync, guest-ping (timed from `started`), then the guest-exec whose stdout it returns:
 * it gives the guest its identity as the runtime does (through the agent) and prints it back.
 */
async function talkToAgent(dir, sockets, deadline, started, { hostname, machineId }) {
  const qga = await JsonLineSocket.open(join(dir, 'qga.sock'), deadline);
  sockets.push(qga);
  await syncAgent(qga, deadline);
  await qga.call('guest-ping');
  const pingMs = performance.now() - started;

  const command = `hostname ${hostname} && echo ${machineId} >/etc/machine-id && echo hello; hostname; cat /etc/machine-id`;
  const { pid } = await qga.call('guest-exec', { path: '/bin/sh', arg: ['-c', command], 'capture-output': true });
  let status;
  while (!(status = await qga.call('guest-exec-status', { pid })).exited) await sleep(10);
  if (status.exitcode !== 0) throw new Error(`guest-exec exited with ${status.exitcode}`);
  return { pingMs, stdout: Buffer.from(status['out-data'] ?? '', 'base64').toString() };
}

const boots = Number(process.argv[2] ?? 1);
if (!Number.isInteger(boots) || boots < 1) throw new Error(`boots must be a positive integer, not ${process.argv[2]}`);
const khz = hostKhz();
const times = [];
for (let i = 1; i <= boots; i++) {
  const { pingMs, stdout } = await bootOnce(khz);
  times.push(pingMs);
  if (i === 1) process.stdout.write(`guest-exec output:\n${stdout}`);
  console.log(`boot ${i}: launch to guest-ping answer ${pingMs.toFixed(0)} ms`);
}
const sorted = [...times].sort((a, b) => a - b);
console.log(`median of ${boots}: ${sorted[Math.floor((boots - 1) / 2)].toFixed(0)} ms`);

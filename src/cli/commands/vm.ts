/**
 * `snapfork vm ...`: the Vers VM API (README, "VMs that run") from the command line: list, boot
 * from a base image or a commit, branch, exec, commit (and tag), pause, resume, delete.
 */
import type { Readable } from 'node:stream';
import { defineCommand, HTTP_FLAGS, JSON_FLAG, output } from '../command.js';
import { wholeNumber } from '../args.js';
import { CliError, UsageError } from '../errors.js';
import { formatTable } from '../format.js';
import { ApiClient, tagApiPath } from '../http-client.js';
import { parseActingReference, parseReference } from '../reference.js';

/** A VM as Vers answers it (`GET /vms`, `GET /vm/{id}/status`). */
interface VmRow {
  vm_id: string;
  owner_id: string;
  state: string;
  created_at: string;
  labels: Record<string, string>;
}

interface ExecResult {
  exit_code: number;
  stdout: string;
  stderr: string;
  exec_id: string;
}

const seg = encodeURIComponent;
const vmPath = (vmId: string): string => `/api/v1/vm/${seg(vmId)}`;

/** The commit `owner/repo:tag` points at: Vers' refs name no owner, so the CLI goes by the commit. */
const commitOfTag = async (client: ApiClient, text: string): Promise<string> =>
  (await client.json<{ commit_id: string }>('GET', tagApiPath(parseReference(text)))).commit_id;

/** `K=V` pairs of a repeated flag as an object; undefined when none was given. */
function keyValues(flag: string, pairs: readonly string[]): Record<string, string> | undefined {
  if (pairs.length === 0) return undefined;
  const values: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new UsageError(`bad --${flag} "${pair}": expected NAME=VALUE`);
    values[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return values;
}

export const vmLs = defineCommand({
  name: 'vm ls',
  args: [],
  flagsUsage: '[--json] [--url U] [--token T]',
  summary: 'List the VMs of the namespace your token acts in.',
  flags: { ...JSON_FLAG, ...HTTP_FLAGS },
  async run(io, _positionals, flags) {
    const rows = await ApiClient.from(flags, io.env).json<VmRow[]>('GET', '/api/v1/vms');
    const table = () =>
      formatTable(
        ['VM', 'STATE', 'CREATED', 'LABELS'],
        rows.map((v) => [v.vm_id, v.state, v.created_at, Object.entries(v.labels).map(([k, val]) => `${k}=${val}`).join(',')]),
      );
    output(io, flags.json, rows, table);
  },
});

export const vmNew = defineCommand({
  name: 'vm new',
  args: [],
  flagsUsage: '[--vcpus N] [--mem MiB] [--disk MiB] [--label K=V]... [--no-wait] [--json] [--url U] [--token T]',
  summary:
    "Boot a VM of the default base image and print its id, once it answers exec (--no-wait: at\n" +
    'once, the VM booting). --disk sizes its root disk; the server says the bounds.',
  flags: {
    vcpus: { type: 'string' },
    mem: { type: 'string' },
    disk: { type: 'string' },
    label: { type: 'string', multiple: true },
    'no-wait': { type: 'boolean' },
    ...JSON_FLAG,
    ...HTTP_FLAGS,
  },
  async run(io, _positionals, flags) {
    const vmConfig = {
      vcpu_count: wholeNumber('vcpus', flags.vcpus, 1, 'a whole number of vCPUs'),
      mem_size_mib: wholeNumber('mem', flags.mem, 1, 'whole MiB'),
      fs_size_mib: wholeNumber('disk', flags.disk, 1, 'whole MiB'),
      labels: keyValues('label', flags.label),
    };
    const result = await ApiClient.from(flags, io.env).json<{ vm_id: string }>('POST', '/api/v1/vm/new_root', {
      query: { wait_boot: String(!flags['no-wait']) },
      json: { vm_config: vmConfig },
    });
    output(io, flags.json, result, () => result.vm_id);
  },
});

export const vmFrom = defineCommand({
  name: 'vm from',
  args: ['<[owner/]repo:tag|commit-id>'],
  flagsUsage: '[--json] [--url U] [--token T]',
  summary:
    'Boot a VM from a commit and print its id: a tag (repo:tag in the namespace your token acts in,\n' +
    'owner/repo:tag anywhere you may read) or a commit id. The commit must hold a root disk\n' +
    '(rootfs.img, or its only file).',
  flags: { ...JSON_FLAG, ...HTTP_FLAGS },
  async run(io, [source], flags) {
    const text = source as string;
    const client = ApiClient.from(flags, io.env);
    let body: { ref: string } | { commit_id: string };
    if (text.includes('/')) {
      body = { commit_id: await commitOfTag(client, text) };
    } else {
      // Vers' own rule: a ref has a colon, a commit id never does; the server checks the rest.
      body = text.includes(':') ? { ref: text } : { commit_id: text };
    }
    const result = await client.json<{ vm_id: string }>('POST', '/api/v1/vm/from_commit', { json: body });
    output(io, flags.json, result, () => result.vm_id);
  },
});

export const vmBranch = defineCommand({
  name: 'vm branch',
  args: ['<vm-id|commit-id|[owner/]repo:tag>'],
  flagsUsage: '[--count N] [--keep-paused] [--json] [--url U] [--token T]',
  summary:
    'Make N VMs (default 1) from a running VM (its memory too; --keep-paused leaves it paused\n' +
    'after), a commit or a tag, and print their ids, one a line.',
  flags: { count: { type: 'string' }, 'keep-paused': { type: 'boolean' }, ...JSON_FLAG, ...HTTP_FLAGS },
  async run(io, [source], flags) {
    const text = source as string;
    const count = wholeNumber('count', flags.count, 1, 'a whole number of VMs, at least 1');
    // A tag names a commit: there is no VM to leave paused.
    if (text.includes(':') && flags['keep-paused']) throw new UsageError('--keep-paused applies to a VM, not a tag');
    const client = ApiClient.from(flags, io.env);
    let path: string;
    if (text.includes('/')) {
      path = `${vmPath(await commitOfTag(client, text))}/branch`;
    } else if (text.includes(':')) {
      const ref = parseActingReference(text);
      path = `/api/v1/vm/branch/by_ref/${seg(ref.repo)}/${seg(ref.tag)}`;
    } else {
      // The server tells a VM's id from a commit's.
      path = `${vmPath(text)}/branch`;
    }
    const result = await client.json<{ vms: { vm_id: string }[] }>('POST', path, {
      query: { count, keep_paused: flags['keep-paused'] ? 'true' : undefined },
    });
    output(io, flags.json, result, () => result.vms.map((vm) => vm.vm_id).join('\n'));
  },
});

/** All of stdin when it is piped or redirected; nothing when it is a terminal or absent. */
async function pipedInput(stdin: Readable | undefined): Promise<string | undefined> {
  if (!stdin || (stdin as Readable & { isTTY?: boolean }).isTTY) return undefined;
  const chunks: Buffer[] = [];
  for await (const chunk of stdin) chunks.push(Buffer.from(chunk as Uint8Array));
  // The exec call carries stdin as a JSON string, as Vers does.
  return Buffer.concat(chunks).toString('utf8');
}

/** A process exit status from the guest's: 0-255 as is, anything else a failure. */
const exitStatus = (code: number): number => (Number.isInteger(code) && code >= 0 && code <= 255 ? code : 1);

export const vmExec = defineCommand({
  name: 'vm exec',
  args: ['<vm_id>', '<command...>'],
  flagsUsage: '[--env K=V]... [--workdir DIR] [--timeout SECS] [--json] [--url U] [--token T]',
  summary:
    "Run a command in a running VM: its stdout and stderr on yours, its exit code as this one's.\n" +
    'Piped stdin is sent to the command. --json prints the server\'s answer instead (same exit code).',
  flags: {
    env: { type: 'string', multiple: true },
    workdir: { type: 'string' },
    timeout: { type: 'string' },
    ...JSON_FLAG,
    ...HTTP_FLAGS,
  },
  async run(io, [vmId, ...command], flags) {
    const env = keyValues('env', flags.env);
    const timeoutSecs = wholeNumber('timeout', flags.timeout, 0, 'whole seconds (0: none)');
    const client = ApiClient.from(flags, io.env);
    const result = await client.json<ExecResult>('POST', `${vmPath(vmId as string)}/exec`, {
      json: { command, env, stdin: await pipedInput(io.stdin), working_dir: flags.workdir, timeout_secs: timeoutSecs },
    });
    if (flags.json) {
      output(io, true, result, () => result.stdout);
    } else {
      // As the command wrote them: no newline added.
      io.stdout.write(result.stdout);
      io.stderr.write(result.stderr);
    }
    return exitStatus(result.exit_code);
  },
});

export const vmCommit = defineCommand({
  name: 'vm commit',
  args: ['<vm-id>'],
  flagsUsage: '[--name N] [--description D] [--keep-paused] [--tag repo:tag] [--json] [--url U] [--token T]',
  summary:
    "Commit a VM (its disk, memory and devices; it runs on unless --keep-paused) and print the\n" +
    "commit's id; --tag then tags it, in a repository of the namespace your token acts in.",
  flags: {
    name: { type: 'string' },
    description: { type: 'string' },
    'keep-paused': { type: 'boolean' },
    tag: { type: 'string' },
    ...JSON_FLAG,
    ...HTTP_FLAGS,
  },
  async run(io, [vmId], flags) {
    // Checked before committing, so that a bad --tag leaves no commit behind.
    const ref = flags.tag === undefined ? undefined : parseActingReference(flags.tag);
    const client = ApiClient.from(flags, io.env);
    const { commit_id } = await client.json<{ commit_id: string }>('POST', `${vmPath(vmId as string)}/commit`, {
      query: { keep_paused: flags['keep-paused'] ? 'true' : undefined },
      json: { name: flags.name, description: flags.description },
    });
    let tag: string | undefined;
    if (ref) {
      try {
        const tagged = await client.json<{ reference: string }>('POST', `/api/v1/repositories/${seg(ref.repo)}/tags`, {
          json: { tag_name: ref.tag, commit_id },
        });
        tag = tagged.reference;
      } catch (err) {
        // The commit stands: say which, so that it can be tagged by hand.
        if (err instanceof CliError) throw new CliError(`committed ${commit_id}, but tagging it ${flags.tag} failed: ${err.message}`);
        throw err;
      }
    }
    output(io, flags.json, { commit_id, ...(tag === undefined ? {} : { tag }) }, () => commit_id);
  },
});

/** `vm pause` and `vm resume`: set the state, then print the VM as it now is. */
function stateCommand(name: 'pause' | 'resume', state: 'Paused' | 'Running', summary: string) {
  return defineCommand({
    name: `vm ${name}`,
    args: ['<vm_id>'],
    flagsUsage: '[--json] [--url U] [--token T]',
    summary: `${summary} --json prints its status after.`,
    flags: { ...JSON_FLAG, ...HTTP_FLAGS },
    async run(io, [vmId], flags) {
      const client = ApiClient.from(flags, io.env);
      await client.request('PATCH', `${vmPath(vmId as string)}/state`, { json: { state } });
      // The PATCH answers no body: the status is what a script wants to see.
      const vm = await client.json<VmRow>('GET', `${vmPath(vmId as string)}/status`);
      output(io, flags.json, vm, () => `${vm.vm_id} ${vm.state}`);
    },
  });
}

export const vmPause = stateCommand('pause', 'Paused', 'Pause a running VM (its memory kept).');
export const vmResume = stateCommand('resume', 'Running', 'Resume a paused VM.');

export const vmRm = defineCommand({
  name: 'vm rm',
  args: ['<vm_id>'],
  flagsUsage: '[--json] [--url U] [--token T]',
  summary: 'Delete a VM, ending its process.',
  flags: { ...JSON_FLAG, ...HTTP_FLAGS },
  async run(io, [vmId], flags) {
    const result = await ApiClient.from(flags, io.env).json<{ vm_id: string }>('DELETE', vmPath(vmId as string));
    output(io, flags.json, result, () => `deleted ${result.vm_id}`);
  },
});

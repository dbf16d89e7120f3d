/**
 * `snapfork vm ...`: the Vers VM API (README, "VMs that run") from the command line. Only what
 * the server serves today; `new`, `branch` and `commit` come with their routes.
 */
import type { Readable } from 'node:stream';
import { defineCommand, HTTP_FLAGS, JSON_FLAG, output } from '../command.js';
import { UsageError } from '../errors.js';
import { formatTable } from '../format.js';
import { ApiClient, tagApiPath } from '../http-client.js';
import { parseReference } from '../reference.js';

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

const vmPath = (vmId: string): string => `/api/v1/vm/${encodeURIComponent(vmId)}`;

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
      // Vers' ref names no owner: the CLI's usual owner/repo:tag goes by the tag's commit.
      body = { commit_id: (await client.json<{ commit_id: string }>('GET', tagApiPath(parseReference(text)))).commit_id };
    } else {
      // Vers' own rule: a ref has a colon, a commit id never does; the server checks the rest.
      body = text.includes(':') ? { ref: text } : { commit_id: text };
    }
    const result = await client.json<{ vm_id: string }>('POST', '/api/v1/vm/from_commit', { json: body });
    output(io, flags.json, result, () => result.vm_id);
  },
});

/** `K=V` pairs of repeated `--env` flags as an object. */
function parseEnv(pairs: readonly string[]): Record<string, string> | undefined {
  if (pairs.length === 0) return undefined;
  const env: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new UsageError(`bad --env "${pair}": expected NAME=VALUE`);
    env[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return env;
}

function parseTimeout(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d{1,9}$/.test(text)) throw new UsageError(`bad --timeout "${text}": expected whole seconds (0: none)`);
  return Number(text);
}

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
    const env = parseEnv(flags.env);
    const timeoutSecs = parseTimeout(flags.timeout);
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

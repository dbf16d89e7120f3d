/**
 * Vers' VM API under /api/v1 (issue 12): boot a VM from a base image or a commit, list it, exec
 * in it (whole or streamed as NDJSON), read its exec log, read and write its files, pause and
 * resume it, delete it. Field names and values follow the Vers SDK (vers_sdk 0.1.8): states are
 * lower case in answers and `Paused`/`Running` in PATCH .../state; exec output is UTF-8 text,
 * streamed output and files base64.
 */
import { Router, type Request, type Response } from 'express';
import { invalid, tooLarge } from '../../domain/errors.js';
import { MAX_VM_FILE_BYTES, type ExecRequest, type ExecStreamName } from '../../domain/ports/vm-runtime.js';
import type { Services } from '../../domain/services.js';
import { DEFAULT_LOG_ENTRIES, MAX_LOG_ENTRIES } from '../../domain/vm-guest.service.js';
import type { Vm } from '../../domain/model.js';
import type { BranchSource, CommitSource } from '../../domain/vm.service.js';
import { principalOf } from '../auth.js';
import { execLogEntryJson, execStreamLineJson, vmCommitEntityJson, vmJson, vmMetadataJson } from './mapping.js';

/** The largest PUT .../files body: MAX_VM_FILE_BYTES as base64, with room for the path and flags. */
export const MAX_VM_FILE_BODY = Math.ceil(MAX_VM_FILE_BYTES / 3) * 4 + 64 * 1024;

interface FromCommitRequest {
  commit_id?: string;
  ref?: string;
  tag_name?: string;
}

interface NewRootBody {
  vm_config: {
    vcpu_count?: number | null;
    mem_size_mib?: number | null;
    fs_size_mib?: number | null;
    image_name?: string | null;
    kernel_name?: string | null;
    labels?: Record<string, string> | null;
  };
}

interface ExecRequestBody {
  command: string[];
  env?: Record<string, string> | null;
  stdin?: string | null;
  working_dir?: string | null;
  timeout_secs?: number | null;
  exec_id?: string | null;
}

interface WriteFileBody {
  path: string;
  content_b64: string;
  mode?: number | null;
  create_dirs?: boolean | null;
}

interface AttachBody {
  exec_id: string;
  cursor?: number | null;
  from_latest?: boolean | null;
}

const vmId = (req: Request): string => String(req.params.vm_id);

/** Query flags of the branch and commit calls, made booleans and integers by the validator. */
interface SnapshotQuery {
  count?: number;
  keep_paused?: boolean;
  skip_wait_boot?: boolean;
}

const snapshotOptions = (req: Request) => {
  const query = req.query as SnapshotQuery;
  return { keepPaused: query.keep_paused === true, skipWaitBoot: query.skip_wait_boot === true };
};

const execRequestOf = (body: ExecRequestBody): ExecRequest => ({
  command: body.command,
  env: body.env ?? undefined,
  stdin: body.stdin == null ? undefined : Buffer.from(body.stdin, 'utf8'),
  workingDir: body.working_dir ?? undefined,
  // Vers: 0 means no timeout.
  timeoutSecs: body.timeout_secs ? body.timeout_secs : undefined,
});

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Standard base64, padded or not; `invalid` for anything else (Buffer.from would skip it silently). */
function decodeBase64(text: string, field: string): Buffer {
  if (text.length % 4 === 1 || !BASE64.test(text)) throw invalid(`${field} is not base64`);
  const bytes = Buffer.from(text, 'base64');
  if (bytes.length > MAX_VM_FILE_BYTES) throw tooLarge(`a file written here may hold at most ${MAX_VM_FILE_BYTES} bytes`);
  return bytes;
}

/** Writes one NDJSON line, waiting while the client's connection is full (or until it closes). */
async function writeLine(res: Response, value: unknown): Promise<void> {
  if (res.destroyed || res.write(`${JSON.stringify(value)}\n`)) return;
  await new Promise<void>((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/** Starts an NDJSON answer: its lines follow as they come, so the headers go out now. */
function startNdjson(res: Response): void {
  res.status(200).type('application/x-ndjson');
  res.flushHeaders();
}

/** The one commit source a from_commit body names. */
function commitSourceOf(body: FromCommitRequest): CommitSource {
  const given = [
    body.commit_id === undefined ? undefined : { commitId: body.commit_id },
    body.ref === undefined ? undefined : { ref: body.ref },
    body.tag_name === undefined ? undefined : { tagName: body.tag_name },
  ].filter((s) => s !== undefined);
  if (given.length !== 1) throw invalid('give exactly one of commit_id, ref or tag_name');
  return given[0]!;
}

export function versVmRoutes({ vms, vmGuests, snapshots }: Services): Router {
  const router = Router();

  const list = async (_req: Request, res: Response) => void res.json((await vms.list(principalOf(res))).map(vmJson));
  router.get('/vms', list);
  router.get('/vm', list);

  router.post('/vm/new_root', async (req, res) => {
    const config = (req.body as NewRootBody).vm_config;
    const vm = await vms.newRoot(
      principalOf(res),
      {
        vcpuCount: config.vcpu_count ?? undefined,
        memSizeMib: config.mem_size_mib ?? undefined,
        fsSizeMib: config.fs_size_mib ?? undefined,
        imageName: config.image_name ?? undefined,
        kernelName: config.kernel_name ?? undefined,
        labels: config.labels ?? undefined,
      },
      // The validator has made it a boolean (its schema's type). Vers' default: answer at once, the VM booting.
      (req.query as { wait_boot?: boolean }).wait_boot === true,
    );
    res.status(201).json({ vm_id: vm.id });
  });

  router.post('/vm/from_commit', async (req, res) => {
    const vm = await vms.fromCommit(principalOf(res), commitSourceOf(req.body as FromCommitRequest));
    res.status(201).json({ vm_id: vm.id });
  });

  router.get('/vm/:vm_id/status', async (req, res) => {
    res.json(vmJson(await vms.status(principalOf(res), vmId(req))));
  });

  router.get('/vm/:vm_id/metadata', async (req, res) => {
    const { vm, grandparentVmId } = await vms.metadata(principalOf(res), vmId(req));
    res.json(vmMetadataJson(vm, grandparentVmId));
  });

  router.post('/vm/:vm_id/exec', async (req, res) => {
    const body = req.body as ExecRequestBody;
    const result = await vmGuests.exec(principalOf(res), vmId(req), execRequestOf(body), body.exec_id ?? undefined);
    res.json({
      exit_code: result.exitCode,
      // Vers answers UTF-8 decoded output, invalid bytes replaced (the SDK's "lossy").
      stdout: result.stdout.toString('utf8'),
      stderr: result.stderr.toString('utf8'),
      exec_id: result.execId,
    });
  });

  router.post('/vm/:vm_id/exec/stream', async (req, res) => {
    const body = req.body as ExecRequestBody;
    const { pump } = await vmGuests.execStream(principalOf(res), vmId(req), execRequestOf(body), body.exec_id ?? undefined);
    // A client that leaves ends the command (and the polling of its output) at once.
    const left = new AbortController();
    res.on('close', () => left.abort());
    startNdjson(res);
    await pump((record) => writeLine(res, execStreamLineJson(record)), left.signal);
    res.end();
  });

  router.post('/vm/:vm_id/exec/stream/attach', async (req, res) => {
    const body = req.body as AttachBody;
    const records = await vmGuests.replay(principalOf(res), vmId(req), body.exec_id, {
      cursor: body.cursor ?? undefined,
      fromLatest: body.from_latest ?? false,
    });
    startNdjson(res);
    for (const record of records) await writeLine(res, execStreamLineJson(record));
    res.end();
  });

  router.get('/vm/:vm_id/logs', async (req, res) => {
    const query = req.query as { offset?: string; max_entries?: string; stream?: ExecStreamName };
    const page = await vmGuests.logPage(principalOf(res), vmId(req), {
      offset: Number(query.offset ?? 0),
      maxEntries: Math.min(MAX_LOG_ENTRIES, Number(query.max_entries ?? DEFAULT_LOG_ENTRIES)),
      stream: query.stream,
    });
    res.json({ entries: page.entries.map(execLogEntryJson), eof: page.eof, next_offset: page.nextOffset });
  });

  router.get('/vm/:vm_id/files', async (req, res) => {
    const content = await vmGuests.readFile(principalOf(res), vmId(req), (req.query as { path: string }).path, MAX_VM_FILE_BYTES);
    res.json({ content_b64: content.toString('base64') });
  });

  router.put('/vm/:vm_id/files', async (req, res) => {
    const body = req.body as WriteFileBody;
    await vmGuests.writeFile(principalOf(res), vmId(req), body.path, decodeBase64(body.content_b64, 'content_b64'), {
      mode: body.mode ?? undefined,
      createDirs: body.create_dirs ?? false,
    });
    res.status(200).end();
  });

  router.patch('/vm/:vm_id/state', async (req, res) => {
    const { state } = req.body as { state: 'Paused' | 'Running' };
    await vms.setState(principalOf(res), vmId(req), state === 'Paused' ? 'paused' : 'running');
    res.status(200).end();
  });

  const branch = (source: (req: Request) => BranchSource) => async (req: Request, res: Response) => {
    const made: Vm[] = await vms.branch(principalOf(res), source(req), (req.query as SnapshotQuery).count ?? 1, snapshotOptions(req));
    res.status(201).json({ vms: made.map((vm) => ({ vm_id: vm.id })) });
  };
  router.post('/vm/branch/by_commit/:commit_id', branch((req) => ({ commit: { commitId: String(req.params.commit_id) } })));
  router.post('/vm/branch/by_ref/:repo/:tag', branch((req) => ({ commit: { ref: `${String(req.params.repo)}:${String(req.params.tag)}` } })));
  router.post('/vm/branch/by_tag/:tag', branch((req) => ({ commit: { tagName: String(req.params.tag) } })));
  router.post('/vm/branch/by_vm/:vm_id', branch((req) => ({ vmId: vmId(req) })));
  router.post('/vm/:vm_or_commit_id/branch', branch((req) => ({ vmOrCommitId: String(req.params.vm_or_commit_id) })));

  router.post('/vm/:vm_id/commit', async (req, res) => {
    const body = (req.body ?? {}) as { name?: string | null; description?: string | null };
    const commit = await vms.commit(principalOf(res), vmId(req), {
      name: body.name ?? undefined,
      description: body.description ?? undefined,
      ...snapshotOptions(req),
    });
    res.status(201).json({ commit_id: commit.id });
  });

  router.get('/vm/commits/:commit_id/parents', async (req, res) => {
    const lineage = await vms.lineage(principalOf(res), String(req.params.commit_id));
    res.json((await snapshots.withOwners(lineage)).map(vmCommitEntityJson));
  });

  router.delete('/vm/:vm_id', async (req, res) => {
    await vms.delete(principalOf(res), vmId(req));
    res.json({ vm_id: vmId(req) });
  });

  return router;
}

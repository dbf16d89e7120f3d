/**
 * Vers' VM API under /api/v1 (issue 12): boot a VM from a base image or a commit, list it, exec
 * in it, pause and resume it, delete it. Field names and values follow the Vers SDK (vers_sdk 0.1.8): states are
 * lower case in answers and `Paused`/`Running` in PATCH .../state; exec output is UTF-8 text.
 */
import { randomUUID } from 'node:crypto';
import { Router, type Request, type Response } from 'express';
import { invalid } from '../../domain/errors.js';
import type { Services } from '../../domain/services.js';
import type { CommitSource } from '../../domain/vm.service.js';
import { principalOf } from '../auth.js';
import { vmJson } from './mapping.js';

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

const vmId = (req: Request): string => String(req.params.vm_id);

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

export function versVmRoutes({ vms }: Services): Router {
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

  router.post('/vm/:vm_id/exec', async (req, res) => {
    const body = req.body as ExecRequestBody;
    const result = await vms.exec(principalOf(res), vmId(req), {
      command: body.command,
      env: body.env ?? undefined,
      stdin: body.stdin == null ? undefined : Buffer.from(body.stdin, 'utf8'),
      workingDir: body.working_dir ?? undefined,
      // Vers: 0 means no timeout.
      timeoutSecs: body.timeout_secs ? body.timeout_secs : undefined,
    });
    res.json({
      exit_code: result.exitCode,
      // Vers answers UTF-8 decoded output, invalid bytes replaced (the SDK's "lossy").
      stdout: result.stdout.toString('utf8'),
      stderr: result.stderr.toString('utf8'),
      exec_id: body.exec_id ?? randomUUID(),
    });
  });

  router.patch('/vm/:vm_id/state', async (req, res) => {
    const { state } = req.body as { state: 'Paused' | 'Running' };
    await vms.setState(principalOf(res), vmId(req), state === 'Paused' ? 'paused' : 'running');
    res.status(200).end();
  });

  router.delete('/vm/:vm_id', async (req, res) => {
    await vms.delete(principalOf(res), vmId(req));
    res.json({ vm_id: vmId(req) });
  });

  return router;
}

/**
 * The validator split by path (src/http/validation.ts) finds the very operation one validator of
 * the whole contract finds, for a request to every path of the contract and its neighbours, with
 * every method: the same matched path, or the same 404 or 405.
 */
import type { AddressInfo } from 'node:net';
import express, { type ErrorRequestHandler, type RequestHandler } from 'express';
import * as OpenApiValidator from 'express-openapi-validator';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadContract } from '../../src/http/contract.js';
import { contractValidation } from '../../src/http/validation.js';

const contract = loadContract();
const options = { validateRequests: false, validateResponses: false, validateSecurity: false, fileUploader: false } as const;
const whole = OpenApiValidator.middleware({ ...options, apiSpec: contract.document as unknown as Parameters<typeof OpenApiValidator.middleware>[0]['apiSpec'] });
const split = contractValidation(contract.document, options);

/** An app answering the operation its validator matched (`openApiRoute`), or the validator's error status. */
async function serve(validation: RequestHandler | RequestHandler[]) {
  const app = express();
  app.use(validation);
  app.use(((req, res) => void res.json({ route: (req as { openapi?: { openApiRoute: string } }).openapi?.openApiRoute ?? null })) as RequestHandler);
  app.use(((err: { status?: number }, _req, res, _next) => void res.status(err.status ?? 500).json({ status: err.status })) as ErrorRequestHandler);
  const server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => new Promise((resolve) => server.close(resolve)) };
}

let apps: Awaited<ReturnType<typeof serve>>[];
beforeAll(async () => {
  apps = [await serve(whole), await serve(split)];
});
afterAll(async () => {
  await Promise.all(apps.map((a) => a.close()));
});

/**
 * Every path of the contract with its parameters filled in, by a plain value and by each literal
 * that paths beginning alike have at the same place (so that `/vm/{vm_id}` is also asked as `/vm/new_root`); the
 * former in upper case too, with a trailing slash, one segment shorter and one longer; and paths
 * no operation holds.
 */
function requestPaths(): string[] {
  const templates = Object.keys(contract.document.paths).map((t) => t.split('/'));
  const isParameter = (segment: string) => segment.includes('{');
  const same = (a: string | undefined, b: string | undefined) => a === b || (a !== undefined && b !== undefined && isParameter(a) && isParameter(b));
  /** The literals of templates that begin as `template` does, at its `i`th segment. */
  const siblings = (template: string[], i: number) =>
    new Set(templates.filter((t) => t.slice(0, i).every((s, j) => same(s, template[j]))).flatMap((t) => (t[i] !== undefined && !isParameter(t[i]) ? [t[i]] : [])));
  const paths = new Set<string>(['/', '/api', '/api/v1', '/api/v1/', '/nowhere/at/all', '/api/v1/nowhere', '/api/v2/repos/a/b']);
  for (const template of templates) {
    const filled = template.map((s) => (isParameter(s) ? (s.endsWith('*') ? 'a/b/c' : 'x1') : s));
    const alternatives = template.flatMap((s, i) => (isParameter(s) ? [...siblings(template, i)].map((literal) => filled.with(i, literal)) : []));
    const path = filled.join('/');
    for (const variant of [path, path.toUpperCase(), `${path}/`, path.slice(0, path.lastIndexOf('/')) || '/', `${path}/more`]) paths.add(variant);
    for (const alternative of alternatives) paths.add(alternative.join('/'));
  }
  return [...paths];
}

it('matches every request to the operation one validator of the whole contract matches', async () => {
  const paths = requestPaths();
  expect(paths.length).toBeGreaterThan(400);
  const differences: string[] = [];
  for (const method of ['GET', 'POST', 'PUT', 'PATCH', 'DELETE']) {
    for (const path of paths) {
      const [a, b] = await Promise.all(
        apps.map(async (app) => {
          const res = await fetch(app.url + path, { method });
          return `${res.status} ${await res.text()}`;
        }),
      );
      if (a !== b) differences.push(`${method} ${path}: ${a} / ${b}`);
    }
  }
  expect(differences).toEqual([]);
}, 120_000);

/**
 * Requests (and, in tests, answers) checked against the contract by express-openapi-validator,
 * one validator per group of paths. The validator finds a request's operation by compiling the
 * pattern of each path of its document in turn until one matches, anew on every request: among
 * the contract's 86 paths that was ~0.4 ms of a file read's CPU. Each validator here holds the
 * paths that begin with the same three literal segments (`/api/v1/repos/...`), and every path
 * whose parameters could stand for them; a request goes to the group its own first three
 * segments name, else to the validator of the whole document. Every path that could match a
 * request is in the validator it goes to, in the same order as in the whole document, so it
 * finds the same operation, and answers 404 and 405 alike.
 */
import { Router, type RequestHandler } from 'express';
import * as OpenApiValidator from 'express-openapi-validator';
import type { OpenApiDocument } from './contract.js';

type ValidatorOptions = Parameters<typeof OpenApiValidator.middleware>[0];

/** Segments a group shares: enough to set a file read's 16 paths apart from the other 70. */
const GROUP_SEGMENTS = 3;

/**
 * The group a path's first segments name (lower case: the validator matches paths without
 * regard to case, as Express does by default), or undefined for a path shorter than that.
 */
function groupKey(segments: readonly string[]): string | undefined {
  if (segments.length < GROUP_SEGMENTS) return undefined;
  return segments.slice(0, GROUP_SEGMENTS).join('/').toLowerCase();
}

const segmentsOf = (path: string) => path.split('/').slice(1);
const isLiteral = (segment: string) => !segment.includes('{');

/** True when a request whose path begins with `key`'s segments could match `template`. */
function couldMatch(template: readonly string[], key: readonly string[]): boolean {
  for (let i = 0; i < key.length; i++) {
    const segment = template[i];
    if (segment === undefined) return false;
    if (isLiteral(segment)) {
      if (segment.toLowerCase() !== key[i]) return false;
    } else if (segment.endsWith('*')) {
      return true;
    }
  }
  return true;
}

/**
 * Middleware validating each request against `document` (its answers too, when `options`
 * says so): express-openapi-validator with `options`, split by path as above.
 */
export function contractValidation(document: OpenApiDocument, options: Omit<ValidatorOptions, 'apiSpec' | 'validateApiSpec'>): RequestHandler {
  const templates = Object.keys(document.paths);
  const keyOf = new Map(templates.map((t) => [t, segmentsOf(t).slice(0, GROUP_SEGMENTS).every(isLiteral) ? groupKey(segmentsOf(t)) : undefined]));
  const keys = new Set([...keyOf.values()].filter((k) => k !== undefined));
  const validatorOf = (paths: string[], validateApiSpec: boolean): RequestHandler => {
    const subset = { ...document, paths: Object.fromEntries(paths.map((p) => [p, document.paths[p]!])) };
    return Router().use(OpenApiValidator.middleware({ ...options, validateApiSpec, apiSpec: subset as unknown as ValidatorOptions['apiSpec'] }));
  };
  // The whole document's validator checks the document itself against OpenAPI's schema, as the
  // server starts; a group's, made on its first request, holds paths already checked.
  const whole = validatorOf(templates, true);
  const groups = new Map<string, RequestHandler>();
  const groupOf = (key: string) => {
    let group = groups.get(key);
    if (group === undefined) {
      const keySegments = key.split('/');
      group = validatorOf(templates.filter((t) => keyOf.get(t) === key || (keyOf.get(t) === undefined && couldMatch(segmentsOf(t), keySegments))), false);
      groups.set(key, group);
    }
    return group;
  };
  return (req, res, next) => {
    const key = groupKey(segmentsOf(req.path));
    (key !== undefined && keys.has(key) ? groupOf(key) : whole)(req, res, next);
  };
}

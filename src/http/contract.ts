/**
 * openapi/snapfork.yaml, read once at start: the validator enforces this very document, the
 * server publishes it (as written and as JSON), and its security requirements say which
 * operations need a signed-in caller before any body is read.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { load } from 'js-yaml';

export const OPENAPI_DOCUMENT = fileURLToPath(new URL('../../openapi/snapfork.yaml', import.meta.url));

const METHODS = ['get', 'put', 'post', 'patch', 'delete'] as const;

type SecurityRequirements = Record<string, string[]>[];
interface Operation {
  security?: SecurityRequirements;
}
export interface OpenApiDocument {
  security?: SecurityRequirements;
  paths: Record<string, Partial<Record<(typeof METHODS)[number], Operation>>>;
}

/** What the contract says of one request. */
export interface ContractOperation {
  /**
   * The path template of the operation, as the contract writes it (`/api/v1/repos/{owner}/{repo}`),
   * or undefined when the contract holds none: a label whose values are bounded by the
   * contract, whatever paths clients send.
   */
  route: string | undefined;
  /**
   * True when the operation demands a token: it lists no empty security requirement. Where
   * templates overlap, an operation open to anonymous callers wins (the domain decides). False
   * for operations the contract does not hold.
   */
  needsUser: boolean;
}

export interface Contract {
  /** The document as parsed. */
  document: OpenApiDocument;
  yaml: string;
  json: string;
  /**
   * The operation at `method` and `path`, a request path without its query. HEAD takes the route
   * of GET, and never needs a user here: the route's own checks answer it.
   */
  operationOf(method: string, path: string): ContractOperation;
}

/** `{name}` matches one path segment, `{name}*` the rest of the path. */
const templateRegExp = (template: string) =>
  new RegExp(`^${template.replace(/[.+?^$()|[\]\\]/g, '\\$&').replace(/\{[^}]+\}(\*?)/g, (_, rest: string) => (rest ? '.+' : '[^/]+'))}$`);

interface CompiledOperation {
  template: string;
  pattern: RegExp;
  guarded: boolean;
}

export function loadContract(file: string = OPENAPI_DOCUMENT): Contract {
  const yaml = readFileSync(file, 'utf8');
  const document = load(yaml) as OpenApiDocument;
  // By method: a request is matched against its own method's operations alone.
  const byMethod = new Map<string, CompiledOperation[]>(METHODS.map((m) => [m.toUpperCase(), []]));
  for (const [template, item] of Object.entries(document.paths)) {
    const pattern = templateRegExp(template);
    for (const m of METHODS) {
      const operation = item[m];
      if (!operation) continue;
      const security = operation.security ?? document.security ?? [];
      const guarded = security.length > 0 && security.every((requirement) => Object.keys(requirement).length > 0);
      byMethod.get(m.toUpperCase())!.push({ template, pattern, guarded });
    }
  }
  return {
    document,
    yaml,
    json: JSON.stringify(document),
    operationOf(method, path) {
      const head = method === 'HEAD';
      let route: string | undefined;
      let needsUser = false;
      for (const o of byMethod.get(head ? 'GET' : method) ?? []) {
        if (!o.pattern.test(path)) continue;
        if (route === undefined) {
          route = o.template;
          needsUser = o.guarded && !head;
        }
        if (!o.guarded || head) return { route, needsUser: false };
      }
      return { route, needsUser };
    },
  };
}

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

export interface Contract {
  /** The document as parsed. */
  document: OpenApiDocument;
  yaml: string;
  json: string;
  /**
   * True when the operation at `method` and `path` (a request path, without query) demands a
   * token: it lists no empty security requirement. False for operations the contract does not
   * hold.
   */
  needsUser(method: string, path: string): boolean;
  /**
   * The path template of the operation at `method` (HEAD as GET) and `path`, as the contract
   * writes it (`/api/v1/repos/{owner}/{repo}`), or undefined when the contract holds none: a
   * label whose values are bounded by the contract, whatever paths clients send.
   */
  routeOf(method: string, path: string): string | undefined;
}

/** `{name}` matches one path segment, `{name}*` the rest of the path. */
const templateRegExp = (template: string) =>
  new RegExp(`^${template.replace(/[.+?^$()|[\]\\]/g, '\\$&').replace(/\{[^}]+\}(\*?)/g, (_, rest: string) => (rest ? '.+' : '[^/]+'))}$`);

export function loadContract(file: string = OPENAPI_DOCUMENT): Contract {
  const yaml = readFileSync(file, 'utf8');
  const document = load(yaml) as OpenApiDocument;
  const operations = Object.entries(document.paths).flatMap(([template, item]) => {
    const pattern = templateRegExp(template);
    return METHODS.flatMap((m) => {
      const operation = item[m];
      if (!operation) return [];
      const security = operation.security ?? document.security ?? [];
      const guarded = security.length > 0 && security.every((requirement) => Object.keys(requirement).length > 0);
      return [{ template, pattern, method: m.toUpperCase(), guarded }];
    });
  });
  return {
    document,
    yaml,
    json: JSON.stringify(document),
    needsUser(method, path) {
      const matching = operations.filter((o) => o.method === method && o.pattern.test(path));
      // Where templates overlap, an operation open to anonymous callers wins: the domain decides.
      return matching.length > 0 && matching.every((o) => o.guarded);
    },
    routeOf(method, path) {
      const asked = method === 'HEAD' ? 'GET' : method;
      return operations.find((o) => o.method === asked && o.pattern.test(path))?.template;
    },
  };
}

import { UsageError } from './errors.js';

/** A `--name value` flag (repeatable when `multiple`), or a `--name` boolean. */
export type FlagSpec =
  | { readonly type: 'string'; readonly multiple?: false }
  | { readonly type: 'string'; readonly multiple: true }
  | { readonly type: 'boolean' };

export type FlagSpecs = Readonly<Record<string, FlagSpec>>;

export type FlagValues<S extends FlagSpecs> = {
  -readonly [K in keyof S]: S[K] extends { type: 'boolean' }
    ? boolean
    : S[K] extends { multiple: true }
      ? string[]
      : string | undefined;
};

export interface ParsedArgs<S extends FlagSpecs> {
  positionals: string[];
  flags: FlagValues<S>;
  /** `--help` or `-h` was given: the caller prints usage instead of running. */
  help: boolean;
}

/**
 * Parses `argv` against `specs`: positionals, `--flag value`, `--flag=value`, repeated flags,
 * booleans, `--help`/`-h`, and `--` ending the flags. Unknown flags, missing values and values
 * given to booleans are usage errors, so a typo never passes silently.
 */
export function parseArgs<S extends FlagSpecs>(argv: readonly string[], specs: S): ParsedArgs<S> {
  const flags: Record<string, string | boolean | string[] | undefined> = {};
  for (const [name, spec] of Object.entries(specs)) {
    flags[name] = spec.type === 'boolean' ? false : spec.multiple ? [] : undefined;
  }
  const positionals: string[] = [];
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (arg === '--help' || arg === '-h') {
      help = true;
      continue;
    }
    if (!arg.startsWith('-') || arg === '-') {
      positionals.push(arg);
      continue;
    }
    if (!arg.startsWith('--')) throw new UsageError(`unknown option ${arg}`);
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq === -1 ? undefined : eq);
    const spec = Object.hasOwn(specs, name) ? specs[name] : undefined;
    if (!spec) throw new UsageError(`unknown option --${name}`);
    if (spec.type === 'boolean') {
      if (eq !== -1) throw new UsageError(`option --${name} takes no value`);
      flags[name] = true;
      continue;
    }
    let value: string;
    if (eq !== -1) {
      value = arg.slice(eq + 1);
    } else {
      const next = argv[i + 1];
      // A following flag means the value was forgotten; `--name=--x` still passes such a value.
      if (next === undefined || (next.startsWith('--') && next.length > 2)) {
        throw new UsageError(`option --${name} needs a value`);
      }
      value = next;
      i++;
    }
    if (spec.multiple) {
      (flags[name] as string[]).push(value);
    } else {
      if (flags[name] !== undefined) throw new UsageError(`option --${name} given twice`);
      flags[name] = value;
    }
  }
  return { positionals, flags: flags as FlagValues<S>, help };
}

/** A flag's whole number of at least `min`; undefined when the flag is absent. */
export function wholeNumber(flag: string, text: string | undefined, min: number, expected: string): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d{1,9}$/.test(text) || Number(text) < min) throw new UsageError(`bad --${flag} "${text}": expected ${expected}`);
  return Number(text);
}

const SIZE_UNITS: Record<string, number> = { '': 1, k: 2 ** 10, kib: 2 ** 10, m: 2 ** 20, mib: 2 ** 20, g: 2 ** 30, gib: 2 ** 30, t: 2 ** 40, tib: 2 ** 40 };

/** A flag's quota limit: a whole number (a byte size with `sizes`: `500MiB`, `2G`), or null for `default`; undefined when absent. */
export function quotaLimit(flag: string, text: string | undefined, sizes = false): number | null | undefined {
  if (text === undefined) return undefined;
  if (text === 'default') return null;
  const match = /^(\d{1,15})\s*([a-z]*)$/i.exec(text);
  const unit = match && (sizes || match[2] === '') ? SIZE_UNITS[match[2]!.toLowerCase()] : undefined;
  const value = unit === undefined ? NaN : Number(match![1]) * unit;
  if (!Number.isSafeInteger(value)) {
    throw new UsageError(`bad --${flag} "${text}": expected ${sizes ? 'a size such as 500MiB or 2GiB' : 'a whole number'}, or "default"`);
  }
  return value;
}

/**
 * The suite's results as Markdown: every figure with its median (min-max), the tools beside
 * snapfork, issue 15's goal for it, and whether the goal is met.
 */
import { median } from '../server-process.js';
import type { ForkFigures } from './forks.js';
import type { ReadFigure } from './read-path.js';
import type { DataSet, Figure, Phase } from './tools.js';

/** Every sample, by `${tool}|${set}|${figure}`. */
export class Samples {
  private readonly values = new Map<string, number[]>();
  add(tool: string, set: string, figure: Figure, value: number): void {
    const key = `${tool}|${set}|${figure}`;
    this.values.set(key, [...(this.values.get(key) ?? []), value]);
  }
  get(tool: string, set: string, figure: Figure): number[] {
    return this.values.get(`${tool}|${set}|${figure}`) ?? [];
  }
}

export interface Build {
  /** Column heading: "snapfork", or "snapfork (<path>)" when builds are compared. */
  label: string;
  http: string;
  cli: string;
}

export const TOOLS = { restic: 'restic', borg: 'borg', tarZstd: 'tar | zstd -3 -T1' } as const;

export interface SuiteResults {
  header: string[];
  sets: DataSet[];
  builds: Build[];
  samples: Samples;
  versions: { restic: string; borg: string };
  reads: ReadFigure[];
  forks: ForkFigures;
  peakRss: Map<Phase | 'reads', number>;
  /** MB/s, one a run. */
  limits: Map<string, number[]>;
}

const spread = (xs: number[], digits: number) =>
  xs.length === 0 ? '' : xs.length === 1 ? xs[0]!.toFixed(digits) : `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}-${Math.max(...xs).toFixed(digits)})`;
const met = (ok: boolean) => (ok ? '**met**' : 'not met');
const row = (cells: string[]) => `| ${cells.join(' | ')} |`;
const escape = (s: string) => s.replace(/\|/g, '\\|');

export function renderResults(r: SuiteResults): string {
  const { samples, sets, builds } = r;
  const others = [TOOLS.restic, TOOLS.borg, TOOLS.tarZstd];
  const heads = [...builds.map((b) => b.label), `restic ${r.versions.restic}`, `borg ${r.versions.borg} (zstd,3)`, TOOLS.tarZstd];
  const lines = [...r.header, '', '## Data and storage', ''];
  lines.push(row(['figure (median (min-max) of the runs)', ...heads.map(escape), 'goal', 'goal met (first column)']), row(Array.from({ length: heads.length + 3 }, () => '---')));

  /** A row of one figure of one set: snapfork's tool and figure, then the others' figure. */
  const figureRow = (title: string, set: DataSet, ours: 'http' | 'cli', figure: Figure, theirs: Figure | undefined, digits: number, goal: string | ((mine: number, get: (tool: string) => number) => string), isMet: (mine: number, get: (tool: string) => number) => boolean) => {
    const mine = builds.map((b) => samples.get(b[ours], set.name, figure));
    const theirsCells = others.map((tool) => (theirs ? spread(samples.get(tool, set.name, theirs), digits) : ''));
    const get = (tool: string) => median(samples.get(tool, set.name, theirs ?? figure));
    const first = median(mine[0]!);
    lines.push(row([`${title}: ${set.name}`, ...mine.map((xs) => spread(xs, digits)), ...theirsCells, typeof goal === 'string' ? goal : goal(first, get), mine[0]!.length ? met(isMet(first, get)) : '']));
  };
  const fasterOfTheTwo = (get: (tool: string) => number) => Math.max(get(TOOLS.restic), get(TOOLS.borg));
  const ratioGoal = (m: number, get: (tool: string) => number) => `≥ 1.2× the faster of restic and borg (${(m / fasterOfTheTwo(get)).toFixed(2)}×)`;
  for (const set of sets) figureRow('first push, HTTP tar push (MB/s)', set, 'http', 'first push', 'first push', 0, ratioGoal, (m, get) => m >= 1.2 * fasterOfTheTwo(get));
  for (const set of sets) figureRow('first push, CLI delta push (MB/s)', set, 'cli', 'CLI push', 'first push', 0, ratioGoal, (m, get) => m >= 1.2 * fasterOfTheTwo(get));
  for (const set of sets) {
    const stored = median(samples.get(builds[0]!.http, set.name, 'unchanged stored bytes'));
    figureRow('push unchanged again, full read (MB/s; restic --force, borg without files cache)', set, 'http', 'unchanged push', 'unchanged push', 0, (m, get) => `≥ restic --force (${(m / get(TOOLS.restic)).toFixed(2)}×), 0 new bytes (${stored})`, (m, get) => m >= get(TOOLS.restic) && stored === 0);
  }
  for (const set of sets) {
    figureRow('store growth after v2 (% of the store)', set, 'http', 'growth %', 'growth %', 2, '≤ restic and borg', (m, get) => m <= get(TOOLS.restic) && m <= get(TOOLS.borg));
  }
  for (const set of sets) {
    figureRow('export as tar (MB/s; restic restore, borg extract, zstd -d)', set, 'http', 'export', 'export', 0, '≥ 500 MB/s', (m) => m >= 500);
  }
  for (const set of sets) figureRow('fresh pull of v1 with the CLI (MB/s)', set, 'cli', 'CLI pull', undefined, 0, '≥ 500 MB/s', (m) => m >= 500);

  lines.push('', '## Reads of a 20,000-file tag (ms, one request at a time)', '', row(['read', 'p50', 'p99', 'server CPU a request', 'goal', 'goal met']), row(['---', '---', '---', '---', '---', '---']));
  for (const f of r.reads) {
    const floor = f.name.startsWith('the tag alone');
    lines.push(row([f.name, f.p50.toFixed(2), f.p99.toFixed(2), f.cpuMs.toFixed(2), floor ? '' : 'p50 ≤ 2, p99 ≤ 10', floor ? '' : met(f.p50 <= 2 && f.p99 <= 10)]));
  }

  const { forks } = r;
  const p = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil((q / 100) * xs.length) - 1)]!;
  const sizeRatio = median(forks.largeMs) / median(forks.smallMs);
  lines.push('', '## Forks', '', row(['figure', 'value', 'goal', 'goal met']), row(['---', '---', '---', '---']));
  lines.push(row(['single fork of a 1 KiB tag: p50 / p99 (ms)', `${p(forks.smallMs, 50).toFixed(2)} / ${p(forks.smallMs, 99).toFixed(2)}`, 'p50 ≤ 3, p99 ≤ 10', met(p(forks.smallMs, 50) <= 3 && p(forks.smallMs, 99) <= 10)]));
  lines.push(row([`single fork of the ${sets[0]!.name}'s tag (${(sets[0]!.bytes / 1e6).toFixed(0)} MB): p50 / p99 (ms)`, `${p(forks.largeMs, 50).toFixed(2)} / ${p(forks.largeMs, 99).toFixed(2)}`, 'p50 ≤ 3, p99 ≤ 10', met(p(forks.largeMs, 50) <= 3 && p(forks.largeMs, 99) <= 10)]));
  lines.push(row(['p50 ratio, large / 1 KiB', sizeRatio.toFixed(2), 'independent of size (≤ 1.25)', met(sizeRatio <= 1.25)]));
  lines.push(row(['durable forks/s, 64 clients (per round)', `${spread(forks.perSecond, 0)}; ${forks.errors} errors`, '≥ 1,500/s, 0 errors', met(median(forks.perSecond) >= 1500 && forks.errors === 0)]));

  lines.push('', '## Server peak RSS (MiB, highest of the runs)', '', row(['phase', 'peak', 'goal', 'goal met']), row(['---', '---', '---', '---']));
  for (const [phase, mib] of r.peakRss) lines.push(row([phase, mib.toFixed(0), '≤ 256', met(mib <= 256)]));

  lines.push('', '## This machine (same run)', '', row(['limit', 'MB/s, median (min-max)']), row(['---', '---']));
  for (const [name, values] of r.limits) lines.push(row([escape(name), spread(values, 0)]));
  return lines.join('\n') + '\n';
}

/**
 * The fork network drawn as SVG on the server: d3-hierarchy lays the tree out (the root on the
 * left, each generation of forks one column further right), and the nodes become links to their
 * repositories. No script runs in the browser.
 */
import { stratify, tree } from 'd3-hierarchy';
import type { Visibility } from '../../domain/model.js';
import { bytes } from './format.js';
import { html, type Html } from './html.js';

/** What a node says about the bytes its repository holds. */
export type NodeFigures =
  /** A fork: stored bytes it shares with its source and bytes only it holds. */
  | { kind: 'fork'; sharedBytes: number; ownBytes: number }
  /** Not a fork (or its source is hidden from the viewer): the bytes it stores. */
  | { kind: 'stored'; storedBytes: number }
  /** The figures were being computed by too many others; worth asking again after this long. */
  | { kind: 'busy'; retryAfterSeconds: number }
  /** Not computed for this page: beyond the nodes whose figures a page computes. */
  | { kind: 'skipped' };

export interface GraphNode {
  id: number;
  parentId: number | null;
  /** `namespace/name`. */
  label: string;
  href: string;
  visibility: Visibility;
  figures: NodeFigures;
  /** The repository the page is about. */
  focus: boolean;
}

const NODE_WIDTH = 230;
const NODE_HEIGHT = 58;
const COLUMN_GAP = 60;
const ROW_GAP = 16;
const MARGIN = 8;
const MAX_LABEL = 30;

const clip = (text: string, max: number) => (text.length <= max ? text : `${text.slice(0, max - 1)}…`);

export function figuresText(f: NodeFigures): string {
  switch (f.kind) {
    case 'fork':
      return `shares ${bytes(f.sharedBytes)} · own ${bytes(f.ownBytes)}`;
    case 'stored':
      return `stores ${bytes(f.storedBytes)}`;
    case 'busy':
      return `figures busy: retry in ${f.retryAfterSeconds} s`;
    case 'skipped':
      return 'figures on its storage page';
  }
}

/** The network as an SVG element; `nodes` hold exactly one root and each other node's parent. */
export function forkGraph(nodes: readonly GraphNode[], title: string): Html {
  const root = stratify<GraphNode>()
    .id((n) => String(n.id))
    .parentId((n) => (n.parentId === null ? null : String(n.parentId)))([...nodes]);
  const laidOut = tree<GraphNode>()
    .nodeSize([NODE_HEIGHT + ROW_GAP, NODE_WIDTH + COLUMN_GAP])
    .separation(() => 1)(root);
  const placed = laidOut.descendants();
  // d3 lays trees out top-down: its x is our row, its y our column.
  const top = Math.min(...placed.map((n) => n.x)) - NODE_HEIGHT / 2 - MARGIN;
  const bottom = Math.max(...placed.map((n) => n.x)) + NODE_HEIGHT / 2 + MARGIN;
  const right = Math.max(...placed.map((n) => n.y)) + NODE_WIDTH + MARGIN;
  const left = -MARGIN;
  const width = right - left;
  const height = bottom - top;
  const links = laidOut.links().map(({ source, target }) => {
    const x1 = source.y + NODE_WIDTH;
    const x2 = target.y;
    const mid = (x1 + x2) / 2;
    return html`<path d="M${x1},${source.x} C${mid},${source.x} ${mid},${target.x} ${x2},${target.x}"></path>`;
  });
  const boxes = placed.map(({ data: n, x, y }) => {
    const figures = figuresText(n.figures);
    return html`<a href="${n.href}" class="node${n.focus ? ' focus' : ''} node-${n.visibility}" data-repo="${n.label}">
      <title>${n.label} (${n.visibility}): ${figures}</title>
      <rect x="${y}" y="${x - NODE_HEIGHT / 2}" width="${NODE_WIDTH}" height="${NODE_HEIGHT}" rx="6"></rect>
      <text x="${y + 10}" y="${x - 6}" class="name">${clip(n.label, MAX_LABEL)}</text>
      <text x="${y + 10}" y="${x + 15}" class="figures">${figures}</text>
    </a>`;
  });
  return html`<svg class="graph" xmlns="http://www.w3.org/2000/svg" viewBox="${left} ${top} ${width} ${height}" width="${width}" height="${height}" role="group" aria-label="${title}">
    <g class="links">${links}</g>
    <g class="nodes">${boxes}</g>
  </svg>`;
}

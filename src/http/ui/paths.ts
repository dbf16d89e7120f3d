/**
 * The URLs of the web UI's pages and forms, under `<public base path>/ui`. Names of namespaces,
 * repositories and tags are encoded as path segments; file paths travel in the query.
 */

const seg = encodeURIComponent;

export type PageQuery = Record<string, string | number | undefined>;

function withQuery(path: string, query: PageQuery = {}): string {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) if (value !== undefined && value !== '') params.set(name, String(value));
  const text = params.toString();
  return text === '' ? path : `${path}?${text}`;
}

export class UiPaths {
  /** `root`: the path the UI is served at, e.g. `/ui` or `/snapfork/ui` behind a proxy. */
  constructor(readonly root: string) {}

  home = (query?: PageQuery) => withQuery(`${this.root}/`, query);
  signIn = (next?: string) => withQuery(`${this.root}/sign-in`, { next });
  signOut = () => `${this.root}/sign-out`;
  asset = (name: string) => `${this.root}/static/${seg(name)}`;
  namespace = (ns: string, query?: PageQuery) => withQuery(`${this.root}/namespaces/${seg(ns)}`, query);
  repo = (owner: string, repo: string, query?: PageQuery) => withQuery(`${this.root}/repos/${seg(owner)}/${seg(repo)}`, query);
  network = (owner: string, repo: string) => `${this.repo(owner, repo)}/network`;
  repoStorage = (owner: string, repo: string) => `${this.repo(owner, repo)}/storage`;
  fork = (owner: string, repo: string) => `${this.repo(owner, repo)}/fork`;
  tags = (owner: string, repo: string) => `${this.repo(owner, repo)}/tags`;
  tag = (owner: string, repo: string, tag: string) => `${this.tags(owner, repo)}/${seg(tag)}`;
  history = (owner: string, repo: string, tag: string, query?: PageQuery) => withQuery(`${this.tag(owner, repo, tag)}/history`, query);
  tree = (owner: string, repo: string, tag: string, path = '', query: PageQuery = {}) => withQuery(`${this.tag(owner, repo, tag)}/tree`, { path, ...query });
  file = (owner: string, repo: string, tag: string, path: string) => withQuery(`${this.tag(owner, repo, tag)}/file`, { path });
  archive = (owner: string, repo: string, tag: string) => `${this.tag(owner, repo, tag)}/archive`;
  deleteTag = (owner: string, repo: string, tag: string) => `${this.tag(owner, repo, tag)}/delete`;
  storage = () => `${this.root}/storage`;
  vms = (query?: PageQuery) => withQuery(`${this.root}/vms`, query);
  vmAction = (id: string, action: VmAction) => `${this.root}/vms/${seg(id)}/${action}`;
}

export const VM_ACTIONS = ['pause', 'resume', 'commit', 'delete'] as const;
export type VmAction = (typeof VM_ACTIONS)[number];

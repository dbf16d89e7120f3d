import { conflict, forbidden, notFound, unauthorized } from './errors.js';
import type { Namespace, Role } from './model.js';
import { assertNamespaceName } from './names.js';
import type { AccessPolicy } from './access-policy.js';
import type { Principal, Scope, UserPrincipal } from './principal.js';
import type { MetadataStore } from '../store/types.js';

/** Users, organizations and membership. */
export class AccountService {
  constructor(
    private readonly store: MetadataStore,
    private readonly policy: AccessPolicy,
  ) {}

  /**
   * Turns verified token claims into a principal. Users are provisioned on first sight (tokens
   * come from a trusted issuer); an `org` claim naming an organization that does not exist yet
   * creates it with the user as owner, so a Vers-style org-scoped token works from its first call.
   */
  async principalFor(login: string, scopes: readonly Scope[], org?: string): Promise<UserPrincipal> {
    // Most requests come from known users: a read spares the write of ensureUser.
    const known = await this.store.getNamespace(assertNamespaceName(login));
    if (known?.kind === 'org') throw unauthorized(`token subject ${login} is an organization`);
    const user = known ?? (await this.store.ensureUser(login));
    if (org !== undefined) await this.ensureOrgOf(user, org);
    return { kind: 'user', userId: user.id, login: user.name, scopes: new Set(scopes), org };
  }

  /** Creates the organization if missing, with `user` as its owner. */
  private async ensureOrgOf(user: Namespace, orgName: string): Promise<void> {
    await this.store.transaction(async (tx) => {
      const existing = await tx.getNamespace(assertNamespaceName(orgName));
      if (existing) return;
      const org = await tx.createOrg(orgName);
      await tx.setRole(org.id, user.id, 'owner');
    });
  }

  async me(principal: Principal): Promise<{ user: Namespace; orgs: { org: Namespace; role: Role }[] }> {
    const caller = this.policy.requireUser(principal);
    const user = await this.store.getNamespaceById(caller.userId);
    if (!user) throw notFound('user not found');
    return { user, orgs: await this.store.listMemberships(caller.userId) };
  }

  async createOrg(principal: Principal, name: string): Promise<Namespace> {
    const caller = this.policy.requireScope(principal, 'repo:write');
    assertNamespaceName(name);
    return this.store.transaction(async (tx) => {
      const org = await tx.createOrg(name);
      await tx.setRole(org.id, caller.userId, 'owner');
      return org;
    });
  }

  async getNamespace(name: string): Promise<Namespace> {
    const ns = await this.store.getNamespace(name);
    if (!ns) throw notFound(`namespace ${name} not found`);
    return ns;
  }

  async getNamespaceById(id: number): Promise<Namespace> {
    const ns = await this.store.getNamespaceById(id);
    if (!ns) throw notFound(`namespace ${id} not found`);
    return ns;
  }

  async getOrg(name: string): Promise<Namespace> {
    const ns = await this.store.getNamespace(name);
    if (!ns || ns.kind !== 'org') throw notFound(`organization ${name} not found`);
    return ns;
  }

  /** Adds a member or changes a role; owners only. The last owner cannot step down. */
  async setMember(principal: Principal, orgName: string, login: string, role: Role): Promise<void> {
    const org = await this.getOrg(orgName);
    await this.policy.assertOwnerOf(principal, org);
    const user = await this.store.getNamespace(login);
    if (!user || user.kind !== 'user') throw notFound(`user ${login} not found`);
    await this.store.transaction(async (tx) => {
      const current = await tx.getRole(org.id, user.id);
      if (current === 'owner' && role !== 'owner') {
        const owners = (await tx.listMembers(org.id)).filter((m) => m.role === 'owner');
        if (owners.length === 1) throw conflict('an organization needs at least one owner');
      }
      await tx.setRole(org.id, user.id, role);
    });
  }

  /** Throws `forbidden` unless the caller may act in the organization named by their token. */
  async actingNamespace(principal: Principal): Promise<Namespace> {
    const caller = this.policy.requireUser(principal);
    const name = caller.org ?? caller.login;
    const ns = await this.store.getNamespace(name);
    if (!ns) throw forbidden(`namespace ${name} not found`);
    return ns;
  }
}

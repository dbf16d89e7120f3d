/** Namespaces (users and organizations) and the memberships between them. */
import type { Selectable } from 'kysely';
import type { Namespace, Role } from '../../domain/model.js';
import type { Executor, NamespaceTable } from './schema.js';

/** Creates user `login` unless a namespace of that name exists; says nothing about its kind. */
export async function insertUserIfAbsent(db: Executor, login: string, now: () => string): Promise<void> {
  await db
    .insertInto('namespaces')
    .values({ name: login, kind: 'user', display_name: login, created_at: now() })
    .onConflict((oc) => oc.column('name').doNothing())
    .execute();
}

export async function insertOrg(db: Executor, name: string, now: () => string): Promise<Namespace> {
  const row = await db
    .insertInto('namespaces')
    .values({ name, kind: 'org', display_name: name, created_at: now() })
    .returningAll()
    .executeTakeFirstOrThrow();
  return toNamespace(row);
}

export async function getNamespace(db: Executor, name: string): Promise<Namespace | undefined> {
  const row = await db.selectFrom('namespaces').selectAll().where('name', '=', name).executeTakeFirst();
  return row && toNamespace(row);
}

export async function getNamespaceById(db: Executor, id: number): Promise<Namespace | undefined> {
  const row = await db.selectFrom('namespaces').selectAll().where('id', '=', id).executeTakeFirst();
  return row && toNamespace(row);
}

export async function setRole(db: Executor, orgId: number, userId: number, role: Role): Promise<void> {
  await db
    .insertInto('memberships')
    .values({ org_id: orgId, user_id: userId, role })
    .onConflict((oc) => oc.columns(['org_id', 'user_id']).doUpdateSet({ role }))
    .execute();
}

export async function getRole(db: Executor, orgId: number, userId: number): Promise<Role | undefined> {
  const row = await db
    .selectFrom('memberships')
    .select('role')
    .where('org_id', '=', orgId)
    .where('user_id', '=', userId)
    .executeTakeFirst();
  return row?.role;
}

export async function listMemberships(db: Executor, userId: number): Promise<{ org: Namespace; role: Role }[]> {
  const rows = await membershipsOf(db, 'user_id', userId);
  return rows.map(({ namespace, role }) => ({ org: namespace, role }));
}

export async function listMembers(db: Executor, orgId: number): Promise<{ user: Namespace; role: Role }[]> {
  const rows = await membershipsOf(db, 'org_id', orgId);
  return rows.map(({ namespace, role }) => ({ user: namespace, role }));
}

/** The memberships whose `side` is `id`, each with the namespace at the other end, by name. */
async function membershipsOf(
  db: Executor,
  side: 'org_id' | 'user_id',
  id: number,
): Promise<{ namespace: Namespace; role: Role }[]> {
  const other = side === 'org_id' ? 'memberships.user_id' : 'memberships.org_id';
  const rows = await db
    .selectFrom('memberships')
    .innerJoin('namespaces', 'namespaces.id', other)
    .selectAll('namespaces')
    .select('memberships.role')
    .where(`memberships.${side}`, '=', id)
    .orderBy('namespaces.name')
    .execute();
  return rows.map((r) => ({ namespace: toNamespace(r), role: r.role }));
}

const toNamespace = (r: Selectable<NamespaceTable>): Namespace => ({
  id: r.id,
  name: r.name,
  kind: r.kind,
  displayName: r.display_name,
  createdAt: r.created_at,
});

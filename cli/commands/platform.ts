/**
 * `artifacts platform tenant|grant|ticket|session ...`: the platform model over HTTP (the same
 * calls as the client class: createTenant, createAccessGrant, createMountTicket, revokeGrant,
 * deleteTenant, revokeSession).
 */
import { chmod, writeFile } from 'node:fs/promises';
import { type Command, Option } from 'commander';
import type { GrantView, SessionView, TenantView } from '../../orchestrator/client.js';
import { openClient } from '../../orchestrator/client-config.js';
import { outputOf, UsageError } from '../output.js';
import { apiAction } from './workspace.js';

const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

/** `90`, `45s`, `30m`, `1h`, `7d`, `1h30m` → seconds. */
export function parseDuration(flag: string, v: string): number {
  if (/^\d+$/.test(v) && Number(v) > 0) return Number(v);
  const re = /(\d+)([smhdw])/g;
  let total = 0;
  let consumed = 0;
  for (const m of v.matchAll(re)) {
    total += Number(m[1]) * UNITS[m[2]!]!;
    consumed += m[0].length;
  }
  if (consumed !== v.length || total <= 0) throw new UsageError(`${flag} must be a duration like 90, 45s, 30m, 1h or 7d; got ${JSON.stringify(v)}`);
  return total;
}

function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  return [line(head), ...rows.map(line)].join('\n');
}

const tenantRows = (ts: TenantView[]) => table(['SLUG', 'EXTERNAL ID', 'CREATED'], ts.map((t) => [t.slug, t.external_id ?? '-', t.created_at]));
const grantRows = (gs: GrantView[]) =>
  table(
    ['ID', 'TENANT', 'RUNTIME', 'WORKSPACE', 'MODE', 'STATUS', 'EXPIRES'],
    gs.map((g) => [g.id, g.tenant, g.runtime ?? '(tenant-wide)', g.workspace, g.mode, g.status, g.expires_at ?? 'never']),
  );
const sessionRows = (ss: SessionView[]) =>
  table(
    ['ID', 'WORKSPACE', 'MODE', 'KIND', 'TENANT/RUNTIME', 'STATUS', 'EXPIRES'],
    ss.map((s) => [s.id, s.workspace, s.mode, s.kind, s.tenant ? `${s.tenant}/${s.runtime}` : '-', s.status, s.expires_at ?? 'never']),
  );

function parseMetadata(pairs: string[] | undefined): Record<string, string> | undefined {
  if (!pairs || pairs.length === 0) return undefined;
  const out: Record<string, string> = {};
  for (const p of pairs) {
    const i = p.indexOf('=');
    if (i <= 0) throw new UsageError(`--metadata wants key=value, got ${JSON.stringify(p)}`);
    out[p.slice(0, i)] = p.slice(i + 1);
  }
  return out;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];
const modeOption = () => new Option('--mode <mode>', 'ro or rw').choices(['ro', 'rw']).makeOptionMandatory();

export function register(program: Command): void {
  const platform = program.command('platform').description('platform operators: tenants, access grants, mount tickets');

  const tenant = platform.command('tenant').description('tenants (your customers)');
  tenant
    .command('create')
    .argument('<slug>', 'tenant slug (a-z, 0-9, -; up to 63)')
    .option('--external-id <id>', "your own id for this customer")
    .option('--metadata <key=value>', 'free-form metadata (repeatable)', collect)
    .action(async (slug: string, flags: { externalId?: string; metadata?: string[] }, cmd: Command) => {
      const out = outputOf(cmd);
      const client = await openClient();
      const t = await apiAction(() => client.platform.createTenant(slug, { externalId: flags.externalId, metadata: parseMetadata(flags.metadata) }));
      if (out.json) out.result({ tenant: t });
      else out.info(`Tenant ${t.slug} created.`);
    });
  tenant.command('list').action(async (_f: unknown, cmd: Command) => {
    const out = outputOf(cmd);
    const client = await openClient();
    const ts = await apiAction(() => client.platform.listTenants());
    if (out.json) out.result({ tenants: ts });
    else out.print(tenantRows(ts));
  });
  tenant
    .command('delete')
    .argument('<slug>')
    .description('delete a tenant: all its grants and mount sessions are revoked at once')
    .action(async (slug: string, _f: unknown, cmd: Command) => {
      const out = outputOf(cmd);
      const client = await openClient();
      const r = await apiAction(() => client.platform.deleteTenant(slug));
      if (out.json) out.result(r);
      else out.info(`Tenant ${slug} deleted (${r.revoked_grants} grants and ${r.revoked_sessions} mount sessions revoked).`);
    });

  const grant = platform.command('grant').description('access grants (tenant-wide or runtime-scoped)');
  grant
    .command('create')
    .argument('<workspace>', 'name, handle/name or artifacts://handle/name')
    .requiredOption('--tenant <slug>', 'tenant to grant')
    .option('--runtime <id>', 'limit the grant to one runtime id (default: tenant-wide)')
    .addOption(modeOption())
    .option('--ttl <duration>', 'expire the grant after this long (e.g. 24h)')
    .action(async (workspace: string, flags: { tenant: string; runtime?: string; mode: 'ro' | 'rw'; ttl?: string }, cmd: Command) => {
      const out = outputOf(cmd);
      const ttlSeconds = flags.ttl ? parseDuration('--ttl', flags.ttl) : undefined;
      const client = await openClient();
      const { handle, name } = await apiAction(() => client.resolve(workspace));
      const g = await apiAction(() =>
        client.platform.createAccessGrant(`${handle}/${name}`, { tenantSlug: flags.tenant, runtimeId: flags.runtime, mode: flags.mode, ttlSeconds }),
      );
      if (out.json) out.result({ grant: g });
      else out.info(`Grant ${g.id}: tenant ${g.tenant}${g.runtime ? ` runtime ${g.runtime}` : ' (tenant-wide)'} may mount ${g.workspace} ${g.mode}${g.expires_at ? ` until ${g.expires_at}` : ''}.`);
    });
  grant
    .command('list')
    .option('--tenant <slug>')
    .option('--workspace <workspace>')
    .option('--all', 'include revoked and expired grants')
    .action(async (flags: { tenant?: string; workspace?: string; all?: boolean }, cmd: Command) => {
      const out = outputOf(cmd);
      const client = await openClient();
      const gs = await apiAction(() => client.platform.listGrants(flags));
      if (out.json) out.result({ grants: gs });
      else out.print(grantRows(gs));
    });
  grant
    .command('revoke')
    .argument('<id>')
    .description('revoke a grant and every mount session issued under it')
    .action(async (id: string, _f: unknown, cmd: Command) => {
      const out = outputOf(cmd);
      const client = await openClient();
      const r = await apiAction(() => client.platform.revokeGrant(id));
      if (out.json) out.result(r);
      else out.info(`Grant ${id} revoked (${r.revoked_sessions} mount sessions revoked).`);
    });

  const ticket = platform.command('ticket').description('mount tickets');
  ticket
    .command('create')
    .argument('<workspace>', 'name, handle/name or artifacts://handle/name')
    .requiredOption('--to <tenant/runtime>', 'who gets it: tenant slug and runtime id')
    .addOption(modeOption())
    .requiredOption('--ttl <duration>', 'ticket and session lifetime (e.g. 1h)')
    .option('-o, --output <file>', 'write the ticket to this file (mode 0600) instead of stdout')
    .action(async (workspace: string, flags: { to: string; mode: 'ro' | 'rw'; ttl: string; output?: string }, cmd: Command) => {
      const out = outputOf(cmd);
      const slash = flags.to.indexOf('/');
      if (slash <= 0 || slash === flags.to.length - 1) throw new UsageError('--to must be <tenant>/<runtime>');
      const [tenantSlug, runtimeId] = [flags.to.slice(0, slash), flags.to.slice(slash + 1)];
      const ttlSeconds = parseDuration('--ttl', flags.ttl);
      const client = await openClient();
      const { handle, name } = await apiAction(() => client.resolve(workspace));
      const t = await apiAction(() => client.platform.createMountTicket(tenantSlug, runtimeId, { workspace: `${handle}/${name}`, mode: flags.mode, ttlSeconds }));
      if (flags.output) {
        await writeFile(flags.output, t.mount_ticket + '\n', { mode: 0o600 });
        await chmod(flags.output, 0o600);
      }
      if (out.json) {
        out.result({ ...t, output: flags.output ?? null });
        return;
      }
      if (!flags.output) out.print(t.mount_ticket);
      out.info(
        `Mount ticket for artifacts://${handle}/${name} (${flags.mode}, ${tenantSlug}/${runtimeId}, session ${t.session_id}, expires ${t.expires_at})` +
          (flags.output ? ` written to ${flags.output}` : ''),
      );
    });

  const session = platform.command('session').description('mount sessions (owner mounts and tickets)');
  session
    .command('list')
    .option('--workspace <workspace>')
    .option('--all', 'include ended sessions')
    .action(async (flags: { workspace?: string; all?: boolean }, cmd: Command) => {
      const out = outputOf(cmd);
      const client = await openClient();
      const ss = await apiAction(() => client.sessions.list(flags));
      if (out.json) out.result({ mount_sessions: ss });
      else out.print(sessionRows(ss));
    });
  session
    .command('revoke')
    .argument('<id>')
    .description('revoke a mount session: its Redis user is deleted and its connections killed')
    .action(async (id: string, _f: unknown, cmd: Command) => {
      const out = outputOf(cmd);
      const client = await openClient();
      const s = await apiAction(() => client.platform.revokeSession(id));
      if (out.json) out.result({ session: s });
      else out.info(`Mount session ${id} revoked.`);
    });
}

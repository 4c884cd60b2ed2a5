/** Name rules shared by the API, the CLI and the database CHECK constraints. */
export const HANDLE_RE = /^[a-z][a-z0-9-]{0,38}[a-z0-9]$/;
export const WORKSPACE_NAME_RE = /^[a-z][a-z0-9-]{0,38}[a-z0-9]$/;
export const TENANT_SLUG_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;
/** Runtime ids are the platform's own (task ids, VM ids...): printable, no spaces, bounded. */
export const RUNTIME_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;

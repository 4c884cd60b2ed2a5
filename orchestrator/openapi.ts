/** /openapi.json, built from the routes' own JSON schemas (one source of truth). */
import { ERROR_STATUS } from './errors.js';
import { errorSchema } from './schemas.js';

export interface RouteDoc {
  method: string;
  url: string;
  auth: boolean;
  schema?: {
    summary?: string;
    tags?: readonly string[];
    params?: { properties?: Record<string, unknown>; required?: readonly string[] };
    querystring?: { properties?: Record<string, unknown>; required?: readonly string[] };
    body?: unknown;
    response?: Record<string | number, unknown>;
  };
}

export function buildOpenApi(routes: RouteDoc[]): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    const path = r.url.replace(/:([A-Za-z_]+)/g, '{$1}');
    const s = r.schema ?? {};
    const parameters = [
      ...Object.entries(s.params?.properties ?? {}).map(([name, schema]) => ({ name, in: 'path', required: true, schema })),
      ...Object.entries(s.querystring?.properties ?? {}).map(([name, schema]) => ({
        name,
        in: 'query',
        required: s.querystring?.required?.includes(name) ?? false,
        schema,
      })),
    ];
    const responses: Record<string, unknown> = {};
    for (const [status, schema] of Object.entries(s.response ?? {})) {
      responses[status] = { description: 'success', content: { 'application/json': { schema } } };
    }
    if (Object.keys(responses).length === 0) responses['200'] = { description: 'success' };
    responses['default'] = { description: 'error', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } };
    (paths[path] ??= {})[r.method.toLowerCase()] = {
      summary: s.summary,
      tags: s.tags,
      parameters: parameters.length > 0 ? parameters : undefined,
      requestBody: s.body ? { required: true, content: { 'application/json': { schema: s.body } } } : undefined,
      responses,
      security: r.auth ? [{ apiKey: [] }] : [],
    };
  }
  return {
    openapi: '3.0.3',
    info: {
      title: 'artifacts orchestrator',
      version: '1',
      description: `Errors are {code, message}. Codes and statuses: ${Object.entries(ERROR_STATUS)
        .map(([c, s]) => `${c} ${s}`)
        .join(', ')}.`,
    },
    components: {
      securitySchemes: { apiKey: { type: 'http', scheme: 'bearer', description: 'API key art_… (Authorization: Bearer <key>)' } },
      schemas: { Error: errorSchema },
    },
    security: [{ apiKey: [] }],
    paths,
  };
}

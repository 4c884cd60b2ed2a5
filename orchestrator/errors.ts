/**
 * The error envelope `{code, message}` and every code the API returns. The first block are the
 * upstream product's codes (product.md section 12, same HTTP statuses); the rest name the
 * platform objects this orchestrator adds.
 */
export const ERROR_STATUS = {
  unauthorized: 401,
  forbidden: 403,
  workspace_not_found: 404,
  workspace_exists: 409,
  workspace_not_active: 409,
  workspace_not_completable: 409,
  setting_key_missing: 422,
  metadata_acl_provisioning_failed: 500,
  invalid_request: 422,

  not_found: 404,
  api_key_not_found: 404,
  tenant_not_found: 404,
  tenant_exists: 409,
  grant_not_found: 404,
  grant_exists: 409,
  session_not_found: 404,
  payload_too_large: 413,
  unsupported_media_type: 415,
  internal: 500,
  unavailable: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

export interface ErrorBody {
  code: ErrorCode;
  message: string;
  [extra: string]: unknown;
}

export class ApiError extends Error {
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** Extra fields of the body, e.g. `existing` for workspace_exists. */
    readonly extra?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'ApiError';
    this.status = ERROR_STATUS[code];
  }

  body(): ErrorBody {
    return { ...this.extra, code: this.code, message: this.message };
  }
}

export function apiError(code: ErrorCode, message: string, extra?: Record<string, unknown>): ApiError {
  return new ApiError(code, message, extra);
}

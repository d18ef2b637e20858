// Authentication for /v1 and /admin, and the per-tenant model allow-list.
// Every /v1 request leaves here with res.locals.tenant set: the key's tenant in
// multi-tenant mode, ANONYMOUS_TENANT in single-tenant mode (no registry).
import type { IncomingHttpHeaders } from "node:http";
import type { RequestHandler } from "express";
import { ApiError } from "../errors.js";
import { maskApiKey, secretsEqual } from "../tenants/keys.js";
import type { TenantRegistry } from "../tenants/registry.js";
import { ANONYMOUS_TENANT, type Tenant } from "../tenants/types.js";

declare global {
  namespace Express {
    interface Locals {
      /** The tenant the request belongs to (set by `authenticate` on every /v1 route). */
      tenant: Tenant;
    }
  }
}

/**
 * The key a request presents: `Authorization: Bearer <key>` (what the OpenAI
 * SDKs send), else `x-api-key: <key>` (Anthropic-style clients). Null when
 * neither carries a non-empty key.
 */
export function presentedKey(headers: IncomingHttpHeaders): string | null {
  const authorization = headers.authorization;
  if (authorization !== undefined) {
    const match = /^Bearer\s+(.+)$/i.exec(authorization.trim());
    return match ? match[1]!.trim() : null;
  }
  const apiKey = headers["x-api-key"];
  const value = (Array.isArray(apiKey) ? apiKey[0] : apiKey)?.trim();
  return value ? value : null;
}

export function missingKeyError(): ApiError {
  return new ApiError(
    "invalid_api_key",
    "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or in an x-api-key header.",
  );
}

export function incorrectKeyError(key: string): ApiError {
  return new ApiError(
    "invalid_api_key",
    `Incorrect API key provided: ${maskApiKey(key)}. Check the key, or ask your llamux administrator for a new one.`,
  );
}

/**
 * Sets res.locals.tenant. With a registry (multi-tenant mode) a missing,
 * unknown or revoked key is a 401 invalid_api_key; without one every request
 * is ANONYMOUS_TENANT.
 */
export function authenticate(registry: TenantRegistry | null): RequestHandler {
  if (!registry) {
    return (_req, res, next) => {
      res.locals.tenant = ANONYMOUS_TENANT;
      next();
    };
  }
  return (req, res, next) => {
    const key = presentedKey(req.headers);
    if (key === null) throw missingKeyError();
    const tenant = registry.authenticate(key);
    if (!tenant) throw incorrectKeyError(key);
    res.locals.tenant = tenant;
    next();
  };
}

/**
 * Whether `tenant` may use the served model named `requested`. Every name in
 * `servedNames` (the model id and its aliases) is the same model, so a tenant
 * allowed any of them may use all of them.
 */
export function isModelAllowed(tenant: Tenant, requested: string, servedNames: readonly string[]): boolean {
  const allowed = tenant.limits.allowedModels;
  if (allowed === null || allowed.includes(requested)) return true;
  return servedNames.includes(requested) && allowed.some((name) => servedNames.includes(name));
}

/**
 * 403 model_not_allowed when the body's `model` is served but not allowed for
 * the tenant. Runs after the JSON body parser. An unknown model passes through,
 * so the route answers 404 model_not_found as for any other caller.
 */
export function requireAllowedModel(servedNames: () => string[]): RequestHandler {
  return (req, res, next) => {
    const model = (req.body as { model?: unknown } | undefined)?.model;
    if (typeof model === "string") {
      const names = servedNames();
      if (names.includes(model) && !isModelAllowed(res.locals.tenant, model, names)) {
        throw new ApiError("model_not_allowed", `Your API key does not have access to the model '${model}'.`, "model");
      }
    }
    next();
  };
}

/** Guards /admin: `Authorization: Bearer <LLAMUX_ADMIN_KEY>`, compared in constant time. */
export function requireAdminKey(adminKey: string): RequestHandler {
  return (req, _res, next) => {
    const key = presentedKey({ authorization: req.headers.authorization });
    if (key === null) throw new ApiError("invalid_api_key", "You didn't provide the admin key. Send it as Authorization: Bearer $LLAMUX_ADMIN_KEY.");
    if (!secretsEqual(key, adminKey)) throw new ApiError("invalid_api_key", "Incorrect admin key provided.");
    next();
  };
}

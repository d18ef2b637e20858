// Authentication for /v1 and /admin, and the per-tenant model allow-list.
// Every /v1 request leaves here with res.locals.tenant set: the key's tenant in
// multi-tenant mode, ANONYMOUS_TENANT in single-tenant mode (no registry).
import type { IncomingHttpHeaders } from "node:http";
import { SpanStatusCode } from "@opentelemetry/api";
import type { Request, RequestHandler, Response } from "express";
import type { Refusal } from "../audit/auditLog.js";
import { childSpan } from "../../telemetry/tracing.js";
import { ApiError } from "../errors.js";
import { maskApiKey, secretsEqual } from "../tenants/keys.js";
import type { TenantRegistry } from "../tenants/registry.js";
import { ANONYMOUS_TENANT, type Tenant } from "../tenants/types.js";

declare global {
  namespace Express {
    interface Locals {
      /** The tenant the request belongs to (set by `authenticate` on every /v1 route). */
      tenant: Tenant;
      /** The id of the API key that authenticated it; absent: no key (single-tenant mode, a batch line). */
      apiKeyId?: string;
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
  return new ApiError("invalid_api_key", `Incorrect API key provided: ${maskApiKey(key)}. Check the key, or ask your llamux administrator for a new one.`);
}

/** Told of each refused credential, before the 401 is thrown (the audit log listens). */
export type OnRefused = (req: Request, res: Response, refusal: Refusal) => void;

/**
 * Sets res.locals.tenant. With a registry (multi-tenant mode) a missing,
 * unknown or revoked key is a 401 invalid_api_key; without one every request
 * is ANONYMOUS_TENANT.
 */
export function authenticate(registry: TenantRegistry | null, onRefused: OnRefused = () => {}): RequestHandler {
  if (!registry) {
    return (_req, res, next) => {
      res.locals.tenant = ANONYMOUS_TENANT;
      next();
    };
  }
  // The refusal, or null when res.locals now says whose request it is.
  const check = (req: Request, res: Response): { reason: Refusal["reason"]; error: ApiError } | null => {
    const key = presentedKey(req.headers);
    if (key === null) {
      onRefused(req, res, { credential: "api_key", reason: "missing", presented: null });
      return { reason: "missing", error: missingKeyError() };
    }
    const found = registry.authenticateKey(key);
    if (!found) {
      onRefused(req, res, { credential: "api_key", reason: "incorrect", presented: key });
      return { reason: "incorrect", error: incorrectKeyError(key) };
    }
    res.locals.tenant = found.tenant;
    res.locals.apiKeyId = found.keyId;
    return null;
  };
  return (req, res, next) => {
    // A child of the request's span when it is traced: who it is (tenant and
    // key ids, never the key), or why it was refused.
    const span = childSpan("llamux.authenticate");
    const refused = check(req, res);
    if (span) {
      if (refused) {
        span.setAttribute("llamux.auth.result", refused.reason);
        span.setStatus({ code: SpanStatusCode.ERROR });
      } else {
        span.setAttributes({ "llamux.auth.result": "ok", "llamux.tenant.id": res.locals.tenant.id, "llamux.api_key.id": res.locals.apiKeyId ?? "" });
      }
      span.end();
    }
    if (refused) throw refused.error;
    next();
  };
}

/**
 * Whether `tenant` may use the served model named `requested`. `modelNames`
 * are the names of that one served model (its id and aliases, as
 * ServedModels.namesOf gives them), never of every served model: a tenant
 * allowed any name of a model may use all its names, and nothing else.
 */
export function isModelAllowed(tenant: Tenant, requested: string, modelNames: readonly string[]): boolean {
  const allowed = tenant.limits.allowedModels;
  if (allowed === null || allowed.includes(requested)) return true;
  return modelNames.includes(requested) && allowed.some((name) => modelNames.includes(name));
}

/**
 * 403 model_not_allowed when the body's `model` is served but not allowed for
 * the tenant. Runs after the JSON body parser, on every /v1 route (chat,
 * completions, embeddings, responses). An unknown model passes through, so the
 * route answers 404 model_not_found as for any other caller.
 * `namesOf(model)`: the names of the served model called `model`, undefined when none is.
 */
export function requireAllowedModel(namesOf: (model: string) => readonly string[] | undefined): RequestHandler {
  return (req, res, next) => {
    const model = (req.body as { model?: unknown } | undefined)?.model;
    if (typeof model === "string") {
      const names = namesOf(model);
      if (names !== undefined && !isModelAllowed(res.locals.tenant, model, names)) {
        throw new ApiError("model_not_allowed", `Your API key does not have access to the model '${model}'.`, "model");
      }
    }
    next();
  };
}

/** Guards /admin: `Authorization: Bearer <LLAMUX_ADMIN_KEY>`, compared in constant time. */
export function requireAdminKey(adminKey: string, onRefused: OnRefused = () => {}): RequestHandler {
  return (req, res, next) => {
    const key = presentedKey({ authorization: req.headers.authorization });
    if (key === null) {
      onRefused(req, res, { credential: "admin_key", reason: "missing", presented: null });
      throw new ApiError("invalid_api_key", "You didn't provide the admin key. Send it as Authorization: Bearer $LLAMUX_ADMIN_KEY.");
    }
    if (!secretsEqual(key, adminKey)) {
      onRefused(req, res, { credential: "admin_key", reason: "incorrect", presented: key });
      throw new ApiError("invalid_api_key", "Incorrect admin key provided.");
    }
    next();
  };
}

export interface MetricsAccess {
  /** LLAMUX_METRICS_TOKEN; null: unset. */
  token: string | null;
  /** LLAMUX_ADMIN_KEY, also accepted on /metrics; null: unset. */
  adminKey: string | null;
  /** Multi-tenant mode: /metrics lists every tenant, so it is closed to anyone without one of the above. */
  multiTenant: boolean;
}

/**
 * Guards /metrics. Open when there is nothing to protect it with and nothing
 * to hide (single-user mode without LLAMUX_METRICS_TOKEN: as before). Otherwise
 * `Authorization: Bearer <token>` must carry LLAMUX_METRICS_TOKEN or
 * LLAMUX_ADMIN_KEY (compared in constant time); a tenant's API key is never
 * enough, since /metrics shows every tenant. Refused before anything is rendered.
 */
export function requireMetricsAccess(access: MetricsAccess, onRefused: OnRefused = () => {}): RequestHandler {
  const accepted = [access.token, access.adminKey].filter((k): k is string => k !== null);
  if (accepted.length === 0 && !access.multiTenant) return (_req, _res, next) => next();
  return (req, res, next) => {
    if (accepted.length === 0) {
      throw new ApiError(
        "invalid_api_key",
        "/metrics is closed: it lists every tenant, and neither LLAMUX_METRICS_TOKEN nor LLAMUX_ADMIN_KEY is set on this server to scrape it with.",
      );
    }
    const key = presentedKey({ authorization: req.headers.authorization });
    if (key === null) {
      onRefused(req, res, { credential: "metrics_token", reason: "missing", presented: null });
      throw new ApiError("invalid_api_key", "/metrics needs a token: send Authorization: Bearer $LLAMUX_METRICS_TOKEN (or the admin key).");
    }
    // Every accepted secret is compared, so the time taken does not say which one matched.
    let ok = false;
    for (const k of accepted) ok = secretsEqual(key, k) || ok;
    if (!ok) {
      onRefused(req, res, { credential: "metrics_token", reason: "incorrect", presented: key });
      throw new ApiError("invalid_api_key", "Incorrect metrics token provided.");
    }
    next();
  };
}

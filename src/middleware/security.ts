// Guards against a web page driving a llamux that listens on loopback: a page
// can send a "simple" cross-site POST (text/plain or form bodies skip the CORS
// preflight), and after DNS rebinding it can read responses under its own host
// name. So JSON routes take only JSON bodies, and a loopback listener answers
// only requests addressed to a loopback name (or the configured host).
import type { RequestHandler } from "express";
import { ApiError } from "../errors.js";

/** Host names a loopback listener answers to: any port, case-insensitive. */
const LOOPBACK_NAMES = ["localhost", "127.0.0.1", "[::1]", "::1"];

/** Whether `host` (the --host value) is a loopback address or name: the only case where the Host header is checked. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, "");
  return h === "localhost" || h === "::1" || /^127(\.\d{1,3}){3}$/.test(h);
}

/** The hostname part of a Host header ("[::1]:8080" → "[::1]", "LocalHost:1" → "localhost"); null when malformed. */
export function hostName(header: string): string | null {
  const h = header.trim().toLowerCase();
  const m = /^(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::\d{1,5})?$/.exec(h);
  return m ? m[1]! : null;
}

/**
 * Whether a request with this Host header may be served by a listener bound to
 * `configuredHost`: localhost, 127.0.0.1, [::1] or the configured host itself,
 * with any port. A missing Host (HTTP/1.0) is refused too: browsers always send one,
 * but nothing else needs to go without.
 */
export function isAllowedHost(header: string | undefined, configuredHost: string): boolean {
  if (header === undefined) return false;
  const name = hostName(header);
  if (name === null) return false;
  const configured = configuredHost.toLowerCase().replace(/^\[|\]$/g, "");
  const bare = name.replace(/^\[|\]$/g, "");
  return LOOPBACK_NAMES.includes(name) || bare === configured;
}

/**
 * 421 misdirected_request for a Host that is not a loopback name, on a
 * listener bound to loopback (DNS rebinding: evil.example resolving to
 * 127.0.0.1). `configuredHost` null: the listener is not on loopback, nothing is checked.
 */
export function requireLoopbackHost(configuredHost: string | null): RequestHandler {
  if (configuredHost === null) return (_req, _res, next) => next();
  return (req, _res, next) => {
    if (!isAllowedHost(req.headers.host, configuredHost)) {
      const shown = (req.headers.host ?? "(none)").slice(0, 100);
      throw new ApiError(
        "misdirected_request",
        `This server listens on ${configuredHost} and answers only requests addressed to localhost, 127.0.0.1, [::1] or ${configuredHost}; the Host header was '${shown}'.`,
      );
    }
    next();
  };
}

/**
 * 415 unsupported_media_type for a request that has a body whose Content-Type
 * is not JSON (application/json or application/*+json). A body-less request
 * (GET, DELETE, POST /v1/responses/{id}/cancel) passes. Mount it only in front
 * of JSON routes: a multipart route (a future /v1/files) goes before it.
 */
export function requireJsonBody(): RequestHandler {
  return (req, _res, next) => {
    if (!hasBody(req.headers)) return next();
    if (req.is(["application/json", "application/*+json"]) === false) {
      const type = (req.headers["content-type"] ?? "").slice(0, 100);
      throw new ApiError(
        "unsupported_media_type",
        `The request body must be JSON, sent with 'Content-Type: application/json'; this request's Content-Type is '${type || "(none)"}'. (curl -d sends application/x-www-form-urlencoded unless you add -H 'Content-Type: application/json'.)`,
      );
    }
    next();
  };
}

function hasBody(headers: { "transfer-encoding"?: string; "content-length"?: string }): boolean {
  if (headers["transfer-encoding"] !== undefined) return true;
  const length = headers["content-length"];
  return length !== undefined && length !== "0";
}

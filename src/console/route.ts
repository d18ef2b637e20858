// The operator's console: a static single-page app under /console that talks
// to the admin API (/admin, /metrics, /ready) with the admin key the operator
// types in. The page itself holds no data and needs no key; every figure it
// shows comes from an API that checks the key, so the console can do nothing
// the API cannot. Mounted only where /admin is (LLAMUX_ADMIN_KEY set).
//
// The files are plain ES modules and CSS (no bundler, nothing from a CDN),
// copied into dist by the build and read into memory once, so a request can
// only ever get one of the files listed here.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Router } from "express";

const HERE = path.dirname(fileURLToPath(import.meta.url));
/**
 * dist/src/console/static (copied there by `npm run build`); from a tree
 * compiled with a bare `tsc`, the sources' copy (src/console/static).
 */
export const CONSOLE_DIR =
  [path.join(HERE, "static"), path.resolve(HERE, "../../../src/console/static")].find((d) => fs.existsSync(path.join(d, "index.html"))) ??
  path.join(HERE, "static");

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
};

/**
 * Scripts, styles and fetches from this origin only, no inline script, no
 * framing: the admin key sits in sessionStorage, so nothing else may run here.
 */
const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

interface StaticFile {
  body: Buffer;
  contentType: string;
}

/** Every file of `dir` (one level) whose type the console serves, by name. */
export function loadConsoleFiles(dir: string = CONSOLE_DIR): Map<string, StaticFile> {
  const files = new Map<string, StaticFile>();
  for (const name of fs.readdirSync(dir)) {
    const contentType = TYPES[path.extname(name)];
    if (contentType && fs.statSync(path.join(dir, name)).isFile()) files.set(name, { body: fs.readFileSync(path.join(dir, name)), contentType });
  }
  if (!files.has("index.html")) throw new Error(`the console's index.html is missing from ${dir} (was the build's copy step skipped?)`);
  return files;
}

export function consoleRoute(files: Map<string, StaticFile> = loadConsoleFiles()): Router {
  const router = Router();
  const send = (file: StaticFile, res: import("express").Response) => {
    res.setHeader("content-type", file.contentType);
    res.setHeader("content-security-policy", CSP);
    res.setHeader("x-content-type-options", "nosniff");
    res.setHeader("referrer-policy", "no-referrer");
    // Small files, revalidated on each load so an upgrade is seen at once.
    res.setHeader("cache-control", "no-cache");
    res.send(file.body);
  };
  // The page's modules are relative to it, so it lives at /console/ (a
  // relative redirect, so it still works behind a proxy that adds a prefix).
  // (Routing is not strict: one route sees both /console and /console/.)
  router.get("/console", (req, res) => {
    if (req.path.endsWith("/")) send(files.get("index.html")!, res);
    else res.redirect(302, "console/");
  });
  router.get("/console/:name", (req, res, next) => {
    const file = files.get(req.params.name);
    if (!file) return next();
    send(file, res);
  });
  return router;
}

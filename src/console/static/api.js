// The admin API as the console calls it: every request carries the admin key
// (kept in sessionStorage, so it goes when the tab closes) as a bearer token.
// Paths are relative to the page (/console/), so a proxy prefix is kept.

const KEY = "llamux.adminKey";

export const session = {
  get key() {
    return sessionStorage.getItem(KEY);
  },
  set(key) {
    sessionStorage.setItem(KEY, key);
  },
  clear() {
    sessionStorage.removeItem(KEY);
  },
};

/** The admin key was refused: the console signs out. */
export class Unauthorized extends Error {}

/** The server has no such API (404 on an optional endpoint: an older or partial llamux). */
export class NotAvailable extends Error {}

/** Any other error answer, with the API's own message. */
export class ApiFailure extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

/**
 * Calls `path` ("/admin/tenants", "/metrics") with the admin key.
 * optional: a 404 means the endpoint is absent (NotAvailable), not a missing object;
 * accept: error statuses whose body is still the answer (/ready's 503);
 * signIn: the sign-in form's own check (a 401 there is its answer, not a sign-out).
 */
export async function api(path, { method = "GET", body, optional = false, accept = [], signIn = false } = {}) {
  const headers = { authorization: `Bearer ${session.key ?? ""}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  let res;
  try {
    res = await fetch(`..${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store" });
  } catch (err) {
    throw new ApiFailure(`The server cannot be reached (${err.message}).`, 0);
  }
  const text = await res.text();
  if (res.status === 401) {
    session.clear();
    if (!signIn) window.dispatchEvent(new CustomEvent("llamux:unauthorized"));
    throw new Unauthorized("The admin key was refused.");
  }
  if (res.status === 404 && optional) throw new NotAvailable(`${path.split("?")[0]} is not available on this server.`);
  const json = (res.headers.get("content-type") ?? "").includes("json");
  if (!res.ok && !accept.includes(res.status)) {
    let message = `HTTP ${res.status}`;
    try {
      message = JSON.parse(text).error.message ?? message;
    } catch {}
    throw new ApiFailure(message, res.status);
  }
  return json ? JSON.parse(text) : text;
}

/**
 * Every page of an OpenAI-style usage or costs report: follows next_page
 * (sent back as `page`) while has_more, up to `maxPages`.
 */
export async function allPages(path, maxPages = 50) {
  const data = [];
  let url = path;
  for (let i = 0; i < maxPages; i++) {
    const page = await api(url, { optional: true });
    data.push(...(page.data ?? []));
    if (!page.has_more || !page.next_page) break;
    url = `${path}&page=${encodeURIComponent(page.next_page)}`;
  }
  return data;
}

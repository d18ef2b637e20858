// The operator's console (/console) in a real browser: Debian's chromium,
// headless, driven by playwright-core. An operator signs in with the admin key,
// watches the model's slots, creates a tenant and a key, the key serves a real
// request, the request shows in the tenant's usage, the key is rotated and
// revoked from the page and stops working at once. Screenshots of each view
// are taken after the test has found the elements it expects on it.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { launchChromium, skipWithoutChromium } from "../../helpers/chromium.js";
import { MODELS, startTestServer, waitFor, type TestServer } from "../helpers/server.js";

const ADMIN_KEY = "admin-key-for-console-tests-0123456789";
const TENANT = "console-acme";

let t: TestServer;
before(async () => {
  // A price of $1 an input token and $2 an output token makes the cost an exact whole number of dollars.
  t = await startTestServer(["--model", MODELS.stories260K, "--slots", "2", "--ctx-per-slot", "128", "--price", JSON.stringify({ input: 1e6, output: 2e6 })], {
    env: { LLAMUX_ADMIN_KEY: ADMIN_KEY },
  });
});
after(async () => {
  await t?.close();
});

const adminGet = (p: string) => fetch(`${t.url}${p}`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });

async function chat(key: string): Promise<{ status: number; body: any }> {
  const res = await fetch(`${t.url}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({ model: t.modelId, messages: [{ role: "user", content: "Once upon a time" }], max_tokens: 8 }),
  });
  return { status: res.status, body: await res.json() };
}

describe("console: serving", () => {
  test("/console redirects to /console/, which is the page with a strict CSP and no inline script", async () => {
    const redirect = await fetch(`${t.url}/console`, { redirect: "manual" });
    assert.equal(redirect.status, 302);
    assert.equal(redirect.headers.get("location"), "console/");
    const page = await fetch(`${t.url}/console/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-type") ?? "", /^text\/html/);
    const csp = page.headers.get("content-security-policy") ?? "";
    assert.match(csp, /script-src 'self'/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.equal(page.headers.get("x-content-type-options"), "nosniff");
    const html = await page.text();
    assert.match(html, /<script type="module" src="app.js"><\/script>/);
    assert.doesNotMatch(html, /https?:\/\//, "nothing is loaded from another origin");
    const js = await fetch(`${t.url}/console/app.js`);
    assert.equal(js.status, 200);
    assert.match(js.headers.get("content-type") ?? "", /^text\/javascript/);
  });

  test("only the console's own files are served: anything else is the API's 404", async () => {
    for (const p of ["/console/route.js", "/console/..%2Froute.js", "/console/%2e%2e/%2e%2e/package.json", "/console/static/app.js", "/console/nope.js"]) {
      const res = await fetch(`${t.url}${p}`);
      assert.equal(res.status, 404, p);
      assert.equal(((await res.json()) as any).error.code, "not_found", p);
    }
  });

  test("without LLAMUX_ADMIN_KEY there is no console", async () => {
    const plain = await startTestServer(["--model", MODELS.stories260K, "--slots", "1", "--ctx-per-slot", "64"]);
    try {
      const res = await fetch(`${plain.url}/console/`);
      assert.equal(res.status, 404);
    } finally {
      await plain.close();
    }
  });
});

describe("console: in chromium", skipWithoutChromium(), () => {
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let shots: string;
  const pageErrors: string[] = [];
  const foreignRequests: string[] = [];

  before(async () => {
    shots = process.env.LLAMUX_CONSOLE_SCREENSHOTS ?? fs.mkdtempSync(path.join(os.tmpdir(), "llamux-console-shots-"));
    fs.mkdirSync(shots, { recursive: true });
    browser = await launchChromium();
    context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    page = await context.newPage();
    page.setDefaultTimeout(20_000);
    page.on("pageerror", (err) => pageErrors.push(`pageerror: ${err.message}`));
    page.on("console", (msg) => {
      // A 401 or 404 answer is logged by chromium as a failed load; the page handles those itself.
      if (msg.type() === "error" && !msg.text().startsWith("Failed to load resource")) pageErrors.push(`console: ${msg.text()}`);
    });
    page.on("request", (req) => {
      if (new URL(req.url()).origin !== new URL(t.url).origin) foreignRequests.push(req.url());
    });
  });
  after(async () => {
    // Closing the browser ends every chromium process it started.
    await context?.close();
    await browser?.close();
    if (!process.env.LLAMUX_CONSOLE_SCREENSHOTS && shots) fs.rmSync(shots, { recursive: true, force: true });
  });

  const shoot = async (name: string) => {
    const file = path.join(shots, `${name}.png`);
    await page.screenshot({ path: file, fullPage: true });
    const png = fs.readFileSync(file);
    assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], `${name}.png is a PNG`);
    assert.ok(png.length > 5_000, `${name}.png has content (${png.length} bytes)`);
  };
  const text = async (selector: string) => ((await page.locator(selector).first().textContent()) ?? "").trim();
  const untilText = async (selector: string, want: (s: string) => boolean, what: string, refresh?: () => Promise<void>) => {
    await waitFor(
      async () => {
        if (refresh) {
          // A report may be written a moment after the response: ask again, at most twice a second.
          await refresh();
          await new Promise((r) => setTimeout(r, 500));
        }
        const loc = page.locator(selector);
        return (await loc.count()) > 0 && want(((await loc.first().textContent()) ?? "").trim());
      },
      30_000,
      what,
    );
  };

  // The steps build on each other: once one fails, the rest are skipped, not failed again.
  let broken = false;
  const step = (name: string, fn: () => Promise<void> | void) =>
    test(name, async (tc) => {
      if (broken) return tc.skip("an earlier step failed");
      try {
        await fn();
      } catch (err) {
        broken = true;
        if (pageErrors.length > 0 && err instanceof Error) err.message += `\npage errors: ${pageErrors.join("\n")}`;
        throw err;
      }
    });

  let key = "";
  let keyId = "";
  let served: { prompt_tokens: number; completion_tokens: number };

  step("a wrong admin key is refused on the sign-in form; the right one opens the models view", async () => {
    await page.goto(`${t.url}/console`);
    assert.equal(new URL(page.url()).pathname, "/console/");
    await page.locator("#admin-key").fill("not-the-admin-key-0123456789");
    await page.locator("#login button[type=submit]").click();
    await untilText("#login-error", (s) => s === "That is not the admin key.", "the refusal");
    await page.locator("#admin-key").fill(ADMIN_KEY);
    await page.locator("#login button[type=submit]").click();
    await page.locator("nav a.active", { hasText: "Models" }).waitFor();
    assert.equal(await page.evaluate('sessionStorage.getItem("llamux.adminKey")'), ADMIN_KEY);
  });

  step("the models view draws the model's slots and its live throughput and queue", async () => {
    const card = page.locator(`section.model[data-model="${t.modelId}"]`);
    await card.waitFor();
    await card.locator(".badge.state-ready").waitFor();
    // Two slots, as configured; from the second scrape on, the sparklines draw a line.
    assert.equal(await card.locator("svg.slots rect.slot").count(), 2);
    await waitFor(
      async () =>
        /L/.test(
          (await card
            .locator("svg.sparkline path")
            .first()
            .getAttribute("d")
            .catch(() => null)) ?? "",
        ),
      20_000,
      "a sparkline's line",
    );
    assert.equal(await card.locator("svg.sparkline").count(), 2);
    await shoot("models");
  });

  step("a tenant and a key created in the page; the key serves a real request", async () => {
    await page.locator("nav a", { hasText: "Tenants" }).click();
    await page.locator("#create-tenant input[name=id]").fill(TENANT);
    await page.locator("#create-tenant input[name=tokensPerDay]").fill("100000");
    await page.locator("#create-tenant button[type=submit]").click();
    const row = page.locator(`#tenants tr[data-tenant="${TENANT}"]`);
    await row.waitFor();
    assert.equal(
      ((await adminGet(`/admin/tenants/${TENANT}`).then((r) => r.json())) as any).limits.tokensPerDay,
      100000,
      "the API has the tenant with its limit",
    );
    await page.locator(`section[data-keys-of="${TENANT}"]`).waitFor();
    await page.locator("#create-key input[name=name]").fill("from-the-console");
    await page.locator("#create-key button[type=submit]").click();
    await page.locator("#new-key").waitFor();
    key = await text("#new-key");
    keyId = (await page.locator("#new-key").getAttribute("data-key-id")) ?? "";
    assert.ok(key.length > 20 && keyId, "the new key is shown once");
    assert.equal(await page.locator(`#keys tr[data-key="${keyId}"] [data-field=status]`).textContent(), "active");

    const r = await chat(key);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    served = r.body.usage;
    assert.ok(served.prompt_tokens > 0 && served.completion_tokens > 0);
  });

  step("the model's card and the tenant's row count the request's tokens", async () => {
    await page.locator("nav a", { hasText: "Models" }).click();
    const card = `section.model[data-model="${t.modelId}"]`;
    await untilText(`${card} [data-field=output-tokens]`, (s) => s === String(served.completion_tokens), "the model's output tokens");
    assert.equal(await text(`${card} [data-field=prompt-tokens]`), String(served.prompt_tokens));
    await page.locator("nav a", { hasText: "Tenants" }).click();
    const cell = `#tenants tr[data-tenant="${TENANT}"] [data-field=tokens-since-start]`;
    await untilText(cell, (s) => s === String(served.prompt_tokens + served.completion_tokens), "the tenant's tokens on its row");
    const today = `#tenants tr[data-tenant="${TENANT}"] [data-field=tokens-today]`;
    // Below 1000 tokens the cell shows the exact number.
    await untilText(
      today,
      (s) => s === String(served.prompt_tokens + served.completion_tokens),
      "the tenant's tokens today",
      async () => {
        await page.locator("nav a", { hasText: "Models" }).click();
        await page.locator("nav a", { hasText: "Tenants" }).click();
      },
    );
    await page.locator(`#tenants tr[data-tenant="${TENANT}"] button`, { hasText: "Keys" }).click();
    await page.locator(`#keys tr[data-key="${keyId}"]`).waitFor();
    await shoot("tenants");
  });

  step("the request appears in the usage view", async () => {
    await page.locator("nav a", { hasText: "Usage" }).click();
    await page.locator("button[data-width='1m']").click();
    const row = `#usage-table tr[data-tenant="${TENANT}"]`;
    await untilText(
      `${row} [data-field=requests]`,
      (s) => s === "1",
      "the request in the usage table",
      () => page.locator("#usage-refresh").click(),
    );
    assert.equal(await text(`${row} [data-field=input]`), String(served.prompt_tokens));
    assert.equal(await text(`${row} [data-field=output]`), String(served.completion_tokens));
    assert.ok((await page.locator("#usage-tokens svg.bars rect[data-series]").count()) > 0, "the tokens chart has bars");
    assert.ok((await page.locator(`#usage-requests svg.bars rect[data-series="${TENANT}"]`).count()) > 0, "the requests chart has the tenant's bar");
    const cost = `$${(served.prompt_tokens + 2 * served.completion_tokens).toFixed(2)} USD`;
    await untilText(
      "#costs h3",
      (s) => s.endsWith(cost),
      "the request's cost in the costs chart",
      () => page.locator("#usage-refresh").click(),
    );
    assert.ok((await page.locator(`#costs svg.bars rect[data-series="${TENANT}"]`).count()) > 0, "the costs chart has the tenant's bar");
    await shoot("usage");
  });

  step("rotating and revoking the key in the page: the old key, then the new one, get 401 at once", async () => {
    await page.locator("nav a", { hasText: "Tenants" }).click();
    await page.locator(`#tenants tr[data-tenant="${TENANT}"] button`, { hasText: "Keys" }).click();
    const rotate = page.locator(`#keys tr[data-key="${keyId}"] button`, { hasText: "Rotate" });
    await rotate.click();
    await page.locator(`#keys tr[data-key="${keyId}"] button`, { hasText: "Confirm rotate" }).click();
    await untilText("#new-key", (s) => s.length > 20 && s !== key, "the rotated key");
    const rotated = await text("#new-key");
    const rotatedId = (await page.locator("#new-key").getAttribute("data-key-id")) ?? "";
    assert.equal((await chat(key)).status, 401, "the rotated-out key is refused");
    assert.equal((await chat(rotated)).status, 200, "its replacement works");

    await page.locator(`#keys tr[data-key="${rotatedId}"] button`, { hasText: "Revoke" }).click();
    await page.locator(`#keys tr[data-key="${rotatedId}"] button`, { hasText: "Confirm revoke" }).click();
    await untilText(`#keys tr[data-key="${rotatedId}"] [data-field=status]`, (s) => s.startsWith("revoked"), "the key shown revoked");
    const refused = await chat(rotated);
    assert.equal(refused.status, 401);
    assert.equal(refused.body.error.code, "invalid_api_key");
  });

  step("the audit log view lists the key's creation, rotation and revocation", async () => {
    await page.locator("nav a", { hasText: "Audit" }).click();
    for (const type of ["api_key.created", "api_key.rotated", "api_key.revoked", "tenant.created"]) {
      await page.locator(`#audit tr[data-type="${type}"]`).first().waitFor();
    }
    await shoot("audit");
  });

  step("a refused admin key signs the page out", async () => {
    await page.evaluate('sessionStorage.setItem("llamux.adminKey", "a-key-the-server-refuses-0123")');
    await page.locator("nav a", { hasText: "Tenants" }).click();
    await untilText("#login-error", (s) => s.includes("refused"), "the sign-in form again");
    assert.equal(await page.evaluate('sessionStorage.getItem("llamux.adminKey")'), null);
  });

  test("the page raised no script errors or CSP violations and loaded nothing from another origin", () => {
    assert.deepEqual(pageErrors, []);
    assert.deepEqual(foreignRequests, []);
  });
});

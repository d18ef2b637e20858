// Debian's chromium driven by playwright-core, which downloads no browser of
// its own: the tests launch the system binary and close it themselves.
import fs from "node:fs";
import { chromium, type Browser } from "playwright-core";

const CANDIDATES = [process.env.LLAMUX_CHROMIUM, "/usr/bin/chromium", "/usr/bin/chromium-browser"];

/** The chromium binary, or null when it is not installed. */
export function chromiumBinary(): string | null {
  for (const c of CANDIDATES) if (c && fs.existsSync(c)) return c;
  return null;
}

/**
 * The option a test's describe() takes: skip with a message when chromium is
 * missing, except under CI=true, where the test must fail (CI installs it),
 * so `skip` is false and launchChromium() throws.
 */
export function skipWithoutChromium(): { skip: string | false } {
  if (chromiumBinary() !== null || process.env.CI === "true") return { skip: false };
  return { skip: "chromium is not installed (apt-get install chromium); CI=true makes this a failure" };
}

/** A headless chromium; the caller closes it (browser.close() ends its processes). */
export async function launchChromium(): Promise<Browser> {
  const executablePath = chromiumBinary();
  if (executablePath === null) throw new Error("chromium is not installed (apt-get install chromium; or set LLAMUX_CHROMIUM)");
  // As root (CI, containers) chromium's sandbox cannot start; playwright passes
  // --no-sandbox unless chromiumSandbox is set. The browser only ever loads the
  // test's own server on loopback.
  return chromium.launch({ executablePath, headless: true, chromiumSandbox: false, timeout: 60_000 });
}

// A mixed workload over HTTP, and the check that the usage and cost reports
// equal what the API told the clients: two tenants, two served models, chat,
// completions, responses, a streamed chat and response, embeddings and (when the server
// serves the Batch API) a batch. Every `usage` object a response carried is
// added to an independent tally here; the reports must match it exactly, per
// tenant, per key, per model and per batch, and the costs must be tokens ×
// the configured prices. Shared by the SQLite and the PostgreSQL test.
import assert from "node:assert/strict";
import OpenAI, { toFile } from "openai";
import { waitFor } from "../helpers/server.js";

export interface Price {
  input: number;
  cached_input: number;
  output: number;
}

export interface Tokens {
  requests: number;
  input: number;
  cached: number;
  output: number;
}

const zero = (): Tokens => ({ requests: 0, input: 0, cached: 0, output: 0 });

/** What the API answered, tallied: completions (chat, completions, responses) and embeddings, by a key string. */
export class Tally {
  readonly completions = new Map<string, Tokens>();
  readonly embeddings = new Map<string, Tokens>();

  add(
    kind: "completions" | "embeddings",
    dims: { tenant: string; key: string | null; model: string; batch: string | null },
    u: { input: number; cached: number; output: number },
  ): void {
    const map = kind === "completions" ? this.completions : this.embeddings;
    const k = JSON.stringify([dims.tenant, dims.key, dims.model, dims.batch]);
    const t = map.get(k) ?? zero();
    t.requests += 1;
    t.input += u.input;
    t.cached += u.cached;
    t.output += u.output;
    map.set(k, t);
  }

  /** Summed over entries whose dimensions `pick` maps to the same string. */
  by(
    kind: "completions" | "embeddings",
    pick: (d: { tenant: string; key: string | null; model: string; batch: string | null }) => string,
  ): Map<string, Tokens> {
    const out = new Map<string, Tokens>();
    for (const [k, t] of kind === "completions" ? this.completions : this.embeddings) {
      const [tenant, key, model, batch] = JSON.parse(k) as [string, string | null, string, string | null];
      const g = pick({ tenant, key, model, batch });
      const s = out.get(g) ?? zero();
      s.requests += t.requests;
      s.input += t.input;
      s.cached += t.cached;
      s.output += t.output;
      out.set(g, s);
    }
    return out;
  }
}

export interface Caller {
  tenant: string;
  keyId: string;
  key: string;
}

/** Runs the workload for each caller on each model; returns the tally of the usage objects it was sent. */
export async function runWorkload(url: string, callers: readonly Caller[], models: readonly string[], opts: { batch: boolean }): Promise<Tally> {
  const tally = new Tally();
  for (const c of callers) {
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: c.key, maxRetries: 0, timeout: 60_000 });
    for (const model of models) {
      const dims = { tenant: c.tenant, key: c.keyId, model, batch: null };
      const prompt = `Once upon a time ${c.tenant} met a`;
      // The same chat twice: the second reads its prompt from the slot's cache, so cached tokens are not all zero.
      for (let i = 0; i < 2; i++) {
        const chat = await client.chat.completions.create({ model, messages: [{ role: "user", content: prompt }], max_tokens: 6, temperature: 0 });
        tally.add("completions", dims, {
          input: chat.usage!.prompt_tokens,
          cached: chat.usage!.prompt_tokens_details?.cached_tokens ?? 0,
          output: chat.usage!.completion_tokens,
        });
      }
      const completion = await client.completions.create({ model, prompt, max_tokens: 5, temperature: 0 });
      tally.add("completions", dims, {
        input: completion.usage!.prompt_tokens,
        cached: completion.usage!.prompt_tokens_details?.cached_tokens ?? 0,
        output: completion.usage!.completion_tokens,
      });
      const response = await client.responses.create({ model, input: prompt, max_output_tokens: 16, temperature: 0, store: false });
      tally.add("completions", dims, {
        input: response.usage!.input_tokens,
        cached: response.usage!.input_tokens_details.cached_tokens,
        output: response.usage!.output_tokens,
      });
      const stream = await client.chat.completions.create({
        model,
        messages: [{ role: "user", content: `${prompt} dog` }],
        max_tokens: 7,
        temperature: 0,
        stream: true,
        stream_options: { include_usage: true },
      });
      let streamed: OpenAI.CompletionUsage | null = null;
      for await (const chunk of stream) if (chunk.usage) streamed = chunk.usage;
      assert.ok(streamed, "the stream ends with its usage");
      tally.add("completions", dims, {
        input: streamed.prompt_tokens,
        cached: streamed.prompt_tokens_details?.cached_tokens ?? 0,
        output: streamed.completion_tokens,
      });
      const responseStream = await client.responses.create({
        model,
        input: `${prompt} bird`,
        max_output_tokens: 16,
        temperature: 0,
        store: false,
        stream: true,
      });
      let completed: OpenAI.Responses.ResponseUsage | null = null;
      // max_output_tokens may end it incomplete: either way its last event carries the usage.
      for await (const ev of responseStream) if (ev.type === "response.completed" || ev.type === "response.incomplete") completed = ev.response.usage ?? null;
      assert.ok(completed, "the response stream ends with response.completed or .incomplete and its usage");
      tally.add("completions", dims, { input: completed.input_tokens, cached: completed.input_tokens_details.cached_tokens, output: completed.output_tokens });
      const embedding = await client.embeddings.create({ model, input: [prompt, "a second input"] });
      tally.add("embeddings", dims, { input: embedding.usage.prompt_tokens, cached: 0, output: 0 });
    }
    if (opts.batch) await runBatch(client, c, models, tally);
  }
  return tally;
}

/** A batch of chat lines (one model per batch, as OpenAI's) and one of embeddings on the other model; each output line's usage is tallied under its batch. */
async function runBatch(client: OpenAI, c: Caller, models: readonly string[], tally: Tally): Promise<void> {
  const chatLines = [0, 1, 2].map((i) =>
    JSON.stringify({
      custom_id: `c-${i}`,
      method: "POST",
      url: "/v1/chat/completions",
      body: { model: models[0], messages: [{ role: "user", content: `Batch story ${i} of ${c.tenant}` }], max_tokens: 4 + i, temperature: 0 },
    }),
  );
  const embModel = models[1] ?? models[0];
  const embLines = [0, 1].map((i) =>
    JSON.stringify({ custom_id: `e-${i}`, method: "POST", url: "/v1/embeddings", body: { model: embModel, input: `embed ${c.tenant} ${i}` } }),
  );
  for (const [lines, endpoint] of [
    [chatLines, "/v1/chat/completions"],
    [embLines, "/v1/embeddings"],
  ] as const) {
    const file = await client.files.create({ file: await toFile(Buffer.from(`${lines.join("\n")}\n`), "in.jsonl"), purpose: "batch" });
    let batch = await client.batches.create({ input_file_id: file.id, endpoint, completion_window: "24h" });
    await waitFor(
      async () => ["completed", "failed", "cancelled", "expired"].includes((batch = await client.batches.retrieve(batch.id)).status),
      120_000,
      `batch ${batch.id}`,
    );
    assert.equal(batch.status, "completed");
    assert.equal(batch.request_counts?.completed, lines.length);
    const out = (await (await client.files.content(batch.output_file_id!)).text()).split("\n").filter((l) => l.length > 0);
    for (const line of out) {
      const r = JSON.parse(line) as {
        response: {
          status_code: number;
          body: { model: string; usage: { prompt_tokens: number; completion_tokens?: number; prompt_tokens_details?: { cached_tokens: number } } };
        };
      };
      assert.equal(r.response.status_code, 200);
      const u = r.response.body.usage;
      const model = models.find((m) => r.response.body.model === m) ?? r.response.body.model;
      // A batch line has no key of its own.
      tally.add(
        endpoint === "/v1/embeddings" ? "embeddings" : "completions",
        { tenant: c.tenant, key: null, model, batch: batch.id },
        { input: u.prompt_tokens, cached: u.prompt_tokens_details?.cached_tokens ?? 0, output: u.completion_tokens ?? 0 },
      );
    }
  }
}

export async function getJson(url: string, key: string): Promise<{ status: number; body: any }> {
  const res = await fetch(url, { headers: { authorization: `Bearer ${key}` } });
  return { status: res.status, body: await res.json() };
}

/** Every result of every page of a report, following next_page. */
export async function allResults(base: string, path: string, key: string, query: Record<string, string>): Promise<any[]> {
  const results: any[] = [];
  let page: string | null = null;
  for (let n = 0; n < 1000; n++) {
    const qs = new URLSearchParams({ ...query, ...(page ? { page } : {}) });
    const r = await getJson(`${base}${path}?${qs}`, key);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.object, "page");
    for (const b of r.body.data) {
      assert.equal(b.object, "bucket");
      results.push(...b.results);
    }
    if (!r.body.has_more) return results;
    page = r.body.next_page;
  }
  throw new Error("too many pages");
}

/** Report results summed by `pick` (several buckets of one group add up). */
export function sumResults(results: readonly any[], pick: (r: any) => string): Map<string, Tokens> {
  const out = new Map<string, Tokens>();
  for (const r of results) {
    const g = pick(r);
    const s = out.get(g) ?? zero();
    s.requests += r.num_model_requests;
    s.input += r.input_tokens;
    s.cached += r.input_cached_tokens ?? 0;
    s.output += r.output_tokens ?? 0;
    out.set(g, s);
  }
  return out;
}

/** Sorted entries, for deepEqual with a readable diff. */
export const entries = (m: Map<string, unknown>) => [...m.entries()].sort(([a], [b]) => a.localeCompare(b));

/** USD of `t` at `p` (USD per million tokens): what the cost report must say. */
export function costOf(t: Tokens, p: Price): number {
  return ((t.input - t.cached) * p.input + t.cached * p.cached_input + t.output * p.output) / 1e6;
}

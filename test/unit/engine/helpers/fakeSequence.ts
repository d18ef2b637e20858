// A fake of the engine's sequence interface (engine/sequence.ts): each
// sequence is a token list, "KV state" included, and the token it samples is
// a function of everything it holds, so an answer computed on a restored or
// copied state equals a fresh one only if that state is the right one. Every
// call is logged, and failures can be armed one at a time.
import fs from "node:fs";
import type { SequenceEvaluateOptions, Token } from "node-llama-cpp";
import { EngineCore, type EngineOptions } from "../../../../engine/engineCore.js";
import { IncrementalDetokenizer } from "../../../../engine/detokenizer.js";
import type { Job } from "../../../../engine/job.js";
import type { Delta, EngineErrorPayload, EngineRequest, FromWorker, TokenLogprob } from "../../../../engine/protocol.js";
import { SAMPLE_FAILED } from "../../../../engine/samplingGuard.js";
import type { EngineSequence, Prepared, SavedStates, SequenceRuntime, TokenStream } from "../../../../engine/sequence.js";
import { StopMatcher } from "../../../../engine/stops.js";

/** What the next evaluation of a sequence does instead of succeeding. */
export type Failure = "decode" | "sample";

export class FakeSequence implements EngineSequence {
  contextTokens: Token[] = [];
  /** Armed: the next evaluation fails this way (once). */
  fail: Failure | null = null;
  /** Armed: copyPrefix answers false after copying a wrong tail. */
  copyFails = false;
  /** Armed: loadStateFromFile throws (a file llama.cpp cannot read). */
  loadFails = false;

  constructor(
    readonly index: number,
    private readonly log: string[],
  ) {}

  get nextTokenIndex(): number {
    return this.contextTokens.length;
  }

  async clearHistory(): Promise<void> {
    this.log.push(`${this.index} clear`);
    this.contextTokens = [];
  }

  async keep(tokens: number): Promise<void> {
    this.log.push(`${this.index} keep ${tokens}`);
    this.contextTokens = this.contextTokens.slice(0, tokens);
  }

  async prefill(tokens: Token[]): Promise<void> {
    this.log.push(`${this.index} prefill ${tokens.length}`);
    await this.evaluate(tokens);
  }

  generate(tokens: Token[], _options: SequenceEvaluateOptions, _probabilities: boolean): TokenStream {
    this.log.push(`${this.index} generate ${tokens.length}`);
    const self = this;
    return (async function* () {
      let input = tokens;
      for (;;) {
        await self.evaluate(input);
        const token = nextToken(self.contextTokens);
        yield token;
        input = [token];
      }
    })();
  }

  async copyPrefix(source: EngineSequence, tokens: number): Promise<boolean> {
    this.log.push(`${this.index} copy ${tokens} from ${(source as FakeSequence).index}`);
    if (this.copyFails) {
      this.copyFails = false;
      this.contextTokens = [...source.contextTokens.slice(0, tokens - 1), 0 as Token];
      return false;
    }
    this.contextTokens = source.contextTokens.slice(0, tokens);
    return true;
  }

  async saveStateToFile(file: string): Promise<unknown> {
    this.log.push(`${this.index} save ${this.contextTokens.length}`);
    await fs.promises.writeFile(file, JSON.stringify(this.contextTokens));
    return undefined;
  }

  async loadStateFromFile(file: string): Promise<unknown> {
    this.log.push(`${this.index} load`);
    if (this.loadFails) {
      this.loadFails = false;
      throw new Error("failed to load the state");
    }
    this.contextTokens = JSON.parse(await fs.promises.readFile(file, "utf8")) as Token[];
    return undefined;
  }

  /** One decode: a step's evaluations all settle after it, in some later tick. */
  private async evaluate(tokens: Token[]): Promise<void> {
    await new Promise((resolve) => setImmediate(resolve));
    const fail = this.fail;
    this.fail = null;
    if (fail === "decode") throw new Error("Eval has failed");
    if (fail === "sample") {
      this.contextTokens.push(...tokens);
      throw new Error(SAMPLE_FAILED);
    }
    this.contextTokens.push(...tokens);
  }
}

/** The token sampled after `held`: a function of all of it, in 1..26. */
export function nextToken(held: readonly Token[]): Token {
  let h = 7;
  for (const t of held) h = (h * 31 + t) % 1000003;
  return ((h % 26) + 1) as Token;
}

/** Token t is the letter t ("a" = 1). */
const text = (tokens: readonly number[]) => tokens.map((t) => String.fromCharCode(96 + t)).join("");

export class FakeRuntime implements SequenceRuntime {
  readonly log: string[] = [];
  readonly sequences: FakeSequence[];
  readonly eogTokens: ReadonlySet<Token> = new Set();
  readonly maxTokenBytes = 1;
  samplingErrors: string[] = [];
  disposed = false;

  constructor(slots: number) {
    this.sequences = Array.from({ length: slots }, (_, i) => new FakeSequence(i, this.log));
  }

  prepare(id: string, req: EngineRequest): Prepared | EngineErrorPayload {
    if (req.prompt.kind !== "tokens" || req.prompt.tokens.length === 0)
      return { code: "invalid_prompt", param: "prompt", message: "The fake takes token prompts only." };
    const prompt = req.prompt.tokens as Token[];
    const job: Job = {
      id,
      tenant: req.tenant,
      priority: req.priority,
      batch: req.priorityClass === "batch",
      prompt,
      maxTokens: req.maxTokens ?? 16,
      options: {},
      generated: [],
      stopTokens: new Set(),
      ignoreEos: false,
      detok: new IncrementalDetokenizer((tokens) => text(tokens), prompt),
      stops: new StopMatcher(req.stop),
      slot: null,
      evaluated: 0,
      cachedTokens: 0,
      gen: null,
      cancelled: false,
      stopMatched: false,
      text: "",
      newTokens: 0,
      submittedAtMs: performance.now(),
      queueMs: 0,
      prefillMs: null,
      fork: req.fork ?? null,
      topLogprobs: null,
      logprobs: [],
      grammarSpec: null,
      sampleExcessMs: 0,
      slowSampling: null,
    };
    return { job, promptText: null };
  }

  logprobEntry(): TokenLogprob {
    throw new Error("the fake samples no logprobs");
  }

  takeSamplingErrors(): string[] {
    const out = this.samplingErrors;
    this.samplingErrors = [];
    return out;
  }

  lastSampleOwnMs(): number {
    return 0;
  }

  dispose(): void {
    this.disposed = true;
  }
}

/** How a request ended: its text, finish and usage, or its error. */
export interface Outcome {
  text: string;
  finish?: string;
  usage?: Delta["usage"];
  error?: EngineErrorPayload;
}

export const OPTIONS: EngineOptions = { slots: 2, contextPerSlot: 256, stepTokens: 64, coalesceMs: 0, followUpMs: 0, costs: { inputCost: 1, outputCost: 1 } };

/** An engine on fake sequences, and the outcome of each request it was given. */
export function fakeEngine(opts: Partial<EngineOptions> = {}, kv: SavedStates | null = null) {
  const options = { ...OPTIONS, ...opts };
  const runtime = new FakeRuntime(options.slots);
  const outcomes = new Map<string, { outcome: Outcome; done: Promise<Outcome>; resolve: (o: Outcome) => void }>();
  const entry = (id: string) => {
    let e = outcomes.get(id);
    if (!e) {
      let resolve!: (o: Outcome) => void;
      const done = new Promise<Outcome>((r) => (resolve = r));
      e = { outcome: { text: "" }, done, resolve };
      outcomes.set(id, e);
    }
    return e;
  };
  const emit = (msg: FromWorker) => {
    if (msg.t === "rejected") {
      const e = entry(msg.id);
      e.outcome.error = msg.error;
      e.resolve(e.outcome);
    } else if (msg.t === "step") {
      for (const d of msg.deltas) {
        const e = entry(d.id);
        e.outcome.text += d.text;
        if (d.finish) {
          e.outcome.finish = d.finish;
          e.outcome.usage = d.usage;
          e.resolve(e.outcome);
        }
      }
    }
  };
  const engine = new EngineCore(runtime, options, emit, kv);
  let n = 0;
  /** Submits a token prompt; resolves with how it ended. */
  const run = (tenant: string, prompt: number[], extra: Partial<EngineRequest> = {}): Promise<Outcome> => {
    const id = extra.fork ? `${extra.fork.group}-${extra.fork.index}` : `r${n++}`;
    const e = entry(id);
    engine.submit(id, request(tenant, prompt, extra));
    return e.done;
  };
  return { engine, runtime, run };
}

export function request(tenant: string, prompt: number[], extra: Partial<EngineRequest> = {}): EngineRequest {
  return {
    tenant,
    prompt: { kind: "tokens", tokens: prompt },
    maxTokens: 4,
    stop: [],
    sampling: {
      temperature: 0,
      topP: 1,
      topK: null,
      minP: null,
      seed: 1,
      presencePenalty: 0,
      frequencyPenalty: 0,
      repeatPenalty: null,
      logitBias: {},
      ignoreEos: false,
    },
    echo: false,
    priority: 0,
    ...extra,
  };
}

/** The `n` tokens a sequence holding `prompt` would generate (what a fresh run answers). */
export function expectedText(prompt: readonly number[], n: number): string {
  const held = [...prompt] as Token[];
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = nextToken(held);
    out.push(t);
    held.push(t);
  }
  return text(out);
}

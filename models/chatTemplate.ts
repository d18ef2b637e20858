// Chat prompt rendering. The GGUF's own template wins when it has one (through
// node-llama-cpp's wrapper resolution); otherwise ChatML; `--chat-template FILE`
// overrides both with a Jinja template.
//
// Rendering goes through LlamaText, which keeps template control text apart
// from message text: a user who types "<|im_end|>" or "</s>" gets those
// characters tokenized as text, never as control tokens.
import fs from "node:fs";
import {
  ChatMLChatWrapper,
  JinjaTemplateChatWrapper,
  LlamaText,
  SpecialToken,
  resolveChatWrapper,
  type ChatHistoryItem,
  type ChatWrapper,
  type LlamaModel,
  type Token,
} from "node-llama-cpp";
import type { ChatMessage, ToolDefinition } from "./chatVocabulary.js";
import { withToolTurns } from "./toolPrompt.js";

export interface RenderedChat {
  tokens: Token[];
  /** Template stop texts that may appear as plain text (e.g. "<|im_end|>" in a vocab without it). */
  stopStrings: string[];
}

export class ChatTemplate {
  /** Control tokens that end an assistant turn (e.g. a vocab's own <|im_end|>). */
  readonly stopTokenIds: ReadonlySet<Token>;
  private readonly stopStrings: string[];

  private constructor(
    private readonly model: LlamaModel,
    private readonly wrapper: ChatWrapper,
    readonly name: string,
  ) {
    const { stopTokenIds, stopStrings } = this.analyseStops();
    this.stopTokenIds = stopTokenIds;
    this.stopStrings = stopStrings;
  }

  static select(model: LlamaModel, templateFile: string | null): ChatTemplate {
    if (templateFile) {
      const template = fs.readFileSync(templateFile, "utf8");
      return new ChatTemplate(model, new JinjaTemplateChatWrapper({ template }), `jinja:${templateFile}`);
    }
    const embedded = model.fileInfo.metadata.tokenizer?.chat_template;
    if (typeof embedded === "string" && embedded.length > 0) {
      const wrapper = resolveChatWrapper(model) ?? new ChatMLChatWrapper();
      return new ChatTemplate(model, wrapper, `gguf:${wrapper.wrapperName}`);
    }
    return new ChatTemplate(model, new ChatMLChatWrapper(), "chatml");
  }

  /** `tools`: listed in the system prompt; tool calls and results become text turns (models/toolPrompt.ts). */
  render(messages: readonly ChatMessage[], tools?: readonly ToolDefinition[]): RenderedChat {
    const turns = withToolTurns(messages, tools);
    const history: ChatHistoryItem[] = turns.map((t) =>
      t.role === "assistant"
        ? { type: "model", response: [t.content] }
        : t.role === "user"
          ? { type: "user", text: t.content }
          : { type: "system", text: t.content },
    );
    history.push({ type: "model", response: [] });
    const state = this.wrapper.generateContextState({ chatHistory: history });
    const tokens = withBos(this.model, state.contextText.tokenize(this.model.tokenizer));
    return { tokens, stopStrings: this.stopStrings };
  }

  private analyseStops(): { stopTokenIds: Set<Token>; stopStrings: string[] } {
    const probe = this.wrapper.generateContextState({
      chatHistory: [
        { type: "user", text: "" },
        { type: "model", response: [] },
      ],
    });
    const stopTokenIds = new Set<Token>();
    const stopStrings: string[] = [];
    for (const trigger of probe.stopGenerationTriggers) {
      const text = LlamaText(trigger);
      const tokens = text.tokenize(this.model.tokenizer);
      const onlyToken = tokens.length === 1 ? tokens[0] : undefined;
      if (onlyToken !== undefined && this.model.detokenize([onlyToken], false) === "") {
        stopTokenIds.add(onlyToken); // a control token: it detokenizes to nothing
        continue;
      }
      const plain = text.toString();
      if (plain.length > 0 && !text.values.some((v) => v instanceof SpecialToken)) {
        stopStrings.push(plain);
      }
    }
    return { stopTokenIds, stopStrings };
  }
}

/** Plain-text prompt tokens: special-token strings stay text; BOS added where the model wants it. */
export function tokenizeText(model: LlamaModel, text: string): Token[] {
  return withBos(model, model.tokenize(text, false));
}

function withBos(model: LlamaModel, tokens: Token[]): Token[] {
  const bos = model.tokens.bos;
  if (bos == null || !model.tokens.shouldPrependBosToken || tokens[0] === bos) return tokens;
  return [bos, ...tokens];
}

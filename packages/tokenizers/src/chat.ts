/**
 * Chat templates: the model's `tokenizer.chat_template` (Jinja, rendered with @huggingface/jinja),
 * used by the server to build prompts and by fine-tuning to format chat records.
 */
import { Template } from "@huggingface/jinja";
import type { Tokenizer } from "./types.js";

/** One chat message after validation. */
export interface ChatMessage {
  /** `system`, `user`, `assistant`, `tool` or `developer`. */
  role: string;
  /** Text content. */
  content: string;
}

/** Options of {@link ChatFormatter.render}. */
export interface ChatRenderOptions {
  /** Append the assistant's turn header so the model writes the reply (default true). */
  addGenerationPrompt?: boolean;
}

/**
 * Renders chat messages to a prompt: the model's `tokenizer.chat_template` (Jinja, rendered with
 * @huggingface/jinja) when it has one and it renders, else a plain fallback (`role: content`
 * lines, then `assistant:` as the generation prompt), which suits base models.
 */
export class ChatFormatter {
  private readonly template: Template | undefined;
  /** True when the model's own template is in use. */
  readonly fromModel: boolean;

  constructor(
    source: string | undefined,
    private readonly tokenizer: Tokenizer,
  ) {
    let t: Template | undefined;
    if (source) {
      try {
        t = new Template(source);
      } catch {
        t = undefined;
      }
    }
    this.template = t;
    this.fromModel = t !== undefined;
  }

  /** The text of `messages`, by default with the generation prompt for the assistant's turn. */
  render(messages: ChatMessage[], options: ChatRenderOptions = {}): string {
    const gen = options.addGenerationPrompt ?? true;
    if (this.template) {
      const tk = this.tokenizer;
      const text = (id: number | null) => (id === null ? "" : tk.tokenText(id));
      try {
        return this.template.render({
          messages,
          add_generation_prompt: gen,
          bos_token: text(tk.bosId),
          eos_token: text(tk.eosId),
        });
      } catch {
        // fall through to the plain format
      }
    }
    const body = messages.map((m) => `${m.role}: ${m.content}`).join("\n");
    return gen ? `${body}\nassistant:` : body;
  }
}

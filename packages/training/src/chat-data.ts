/**
 * Chat records for fine-tuning: JSONL lines `{"messages": [{"role", "content"}, ...]}` rendered
 * with the model's chat template (the server's `ChatFormatter`), tokenised, with a loss mask that
 * keeps only the assistant turns as targets.
 */
import { RyzansteinError } from "@ryzanstein/core-tensor";
import { ChatFormatter, type ChatMessage, type Tokenizer } from "@ryzanstein/tokenizers";

/** Tokens of a set of conversations and the mask of the tokens trained on (assistant turns). */
export interface ChatExamples {
  /** Every conversation, one after another. */
  tokens: Int32Array;
  /** 1 for tokens of assistant turns (targets), 0 for the rest (context only). */
  mask: Uint8Array;
  /** Conversations. */
  conversations: number;
}

const ROLES = new Set(["system", "user", "assistant", "tool", "developer"]);

/**
 * Parses JSONL chat records, one `{"messages": [...]}` per non-empty line.
 *
 * @throws RyzansteinError `INVALID_ARGUMENT` naming `file:line` for malformed JSON, a record
 *   without a `messages` array, a message without a known role and string content, or a
 *   conversation with no assistant message; and when there are no records.
 */
export function parseChatJsonl(text: string, file = "<data>"): ChatMessage[][] {
  const out: ChatMessage[][] = [];
  text.split("\n").forEach((line, i) => {
    if (line.trim() === "") return;
    const at = `${file}:${i + 1}`;
    let rec: unknown;
    try {
      rec = JSON.parse(line);
    } catch (e) {
      throw new RyzansteinError("INVALID_ARGUMENT", `${at}: malformed JSON (${(e as Error).message})`);
    }
    const messages = (rec as { messages?: unknown } | null)?.messages;
    if (!Array.isArray(messages) || messages.length === 0)
      throw new RyzansteinError(
        "INVALID_ARGUMENT",
        `${at}: expected an object with a non-empty "messages" array`,
      );
    const conv: ChatMessage[] = messages.map((m: unknown, j: number) => {
      const { role, content } = (m ?? {}) as { role?: unknown; content?: unknown };
      if (typeof role !== "string" || !ROLES.has(role) || typeof content !== "string") {
        throw new RyzansteinError(
          "INVALID_ARGUMENT",
          `${at}: message ${j + 1} needs a role (${[...ROLES].join(", ")}) and a string content`,
        );
      }
      return { role, content };
    });
    if (!conv.some((m) => m.role === "assistant"))
      throw new RyzansteinError(
        "INVALID_ARGUMENT",
        `${at}: the conversation has no assistant message to learn`,
      );
    out.push(conv);
  });
  if (out.length === 0) throw new RyzansteinError("INVALID_ARGUMENT", `${file} has no chat records`);
  return out;
}

/**
 * Renders and tokenises conversations with `chatTemplate` (Jinja; without one, the plain
 * `role: content` format with an EOS after each assistant turn). Each conversation is cut where
 * its assistant turns begin and end: the text up to `render(messages before the turn, generation
 * prompt)` is context, the rest of `render(messages up to the turn)` is the turn. Pieces are
 * tokenised one after another (a piece continuing text gets no SentencePiece space prefix).
 *
 * @throws RyzansteinError `INVALID_ARGUMENT` when the template does not render a conversation
 *   as a continuation of its prefix (the turns could not be located).
 */
export function chatExamples(
  conversations: ChatMessage[][],
  tokenizer: Tokenizer,
  chatTemplate: string | undefined,
): ChatExamples {
  const fmt = new ChatFormatter(chatTemplate, tokenizer);
  const tokens: number[] = [];
  const mask: number[] = [];
  const bosText = tokenizer.bosId === null ? null : tokenizer.tokenText(tokenizer.bosId);
  conversations.forEach((conv, c) => {
    const full = fmt.render(conv, { addGenerationPrompt: false });
    let pos = 0;
    const push = (text: string, train: boolean) => {
      if (text === "") return;
      const first = pos === 0;
      const ids = tokenizer.encode(text, {
        addBos: first && tokenizer.addBos && !(bosText !== null && text.startsWith(bosText)),
        addEos: false,
        parseSpecial: true,
        addSpacePrefix: first ? undefined : false,
      });
      for (const id of ids) {
        tokens.push(id);
        mask.push(train ? 1 : 0);
      }
      pos += text.length;
    };
    conv.forEach((m, i) => {
      if (m.role !== "assistant") return;
      const before = fmt.render(conv.slice(0, i), { addGenerationPrompt: true });
      const upTo = fmt.render(conv.slice(0, i + 1), { addGenerationPrompt: false });
      if (!upTo.startsWith(before) || !full.startsWith(upTo) || before.length < pos) {
        throw new RyzansteinError(
          "INVALID_ARGUMENT",
          `conversation ${c + 1}: the chat template does not render message ${i + 1} as a continuation of the messages before it`,
        );
      }
      push(full.slice(pos, before.length), false);
      const before0 = pos;
      push(full.slice(pos, upTo.length), true);
      if (!fmt.fromModel && tokenizer.eosId !== null) {
        tokens.push(tokenizer.eosId); // the plain format has no end-of-turn marker: teach EOS
        mask.push(1);
      }
      if (pos === before0) pos = upTo.length;
    });
    push(full.slice(pos), false);
  });
  return {
    tokens: Int32Array.from(tokens),
    mask: Uint8Array.from(mask),
    conversations: conversations.length,
  };
}

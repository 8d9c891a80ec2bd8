// The chat template code lives in @ryzanstein/tokenizers (shared with fine-tuning's chat data).
export { type ChatMessage, ChatFormatter } from "@ryzanstein/tokenizers";

// The chat template code lives in @ryzanstein/tokenizers (shared with fine-tuning's chat data).
export { ChatFormatter, type ChatMessage } from "@ryzanstein/tokenizers";

/**
 * `@ryzanstein/tokenizers`: SentencePiece and byte-level BPE tokenizers built from GGUF metadata,
 * matching llama.cpp's `llama-vocab.cpp`.
 *
 * @packageDocumentation
 */

export { bpeMetadata, type TrainBpeOptions, type TrainedBpe, trainBpe } from "./bpe-trainer.js";
export { ChatFormatter, type ChatMessage, type ChatRenderOptions } from "./chat.js";
export { StreamingDecoder, type StreamingDecoderOptions } from "./decoding.js";
export { TokenizerError, type TokenizerErrorCode } from "./errors.js";
export {
  createTokenizerFromHF,
  ggufMetadataFromHFTokenizer,
  type HFTokenizerConfig,
  hfTokenizerFromGGUFMetadata,
} from "./hf.js";
export {
  lookupPreTokenizer,
  PRE_TOKENIZERS,
  type PreTokenizerSpec,
  preTokenize,
} from "./pre-tokenizers.js";
export { createTokenizerFromGGUF } from "./tokenizer.js";
export {
  type DecodeOptions,
  type EncodeOptions,
  type PieceOptions,
  type Tokenizer,
  type TokenizerModel,
  TokenType,
} from "./types.js";

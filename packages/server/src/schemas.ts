import { z } from "zod";

/** Largest `n` a request may ask for. */
export const MAX_N = 16;

const stop = z.union([z.string(), z.array(z.string()).max(16)]).nullish();

/** Fields chat and text completions share. */
const common = {
  model: z.string().nullish(),
  max_tokens: z.number().int().min(1).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  top_k: z.number().int().min(0).nullish(),
  min_p: z.number().min(0).max(1).nullish(),
  seed: z.number().int().nullish(),
  stop,
  n: z.number().int().min(1).max(MAX_N).nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  repeat_penalty: z.number().gt(0).nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish() }).nullish(),
  ignore_eos: z.boolean().nullish(),
  user: z.string().nullish(),
};

const textPart = z.object({ type: z.literal("text"), text: z.string() });

/** `POST /v1/chat/completions` body. */
export const ChatCompletionRequest = z.object({
  ...common,
  messages: z
    .array(
      z.object({
        role: z.enum(["system", "user", "assistant", "tool", "developer"]),
        content: z.union([z.string(), z.array(textPart)]).nullish(),
        name: z.string().nullish(),
      }),
    )
    .min(1),
  max_completion_tokens: z.number().int().min(1).nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.number().int().min(0).max(20).nullish(),
});
/** Parsed chat completion request. */
export type ChatCompletionRequest = z.infer<typeof ChatCompletionRequest>;

/** `POST /v1/completions` body. */
export const CompletionRequest = z.object({
  ...common,
  prompt: z.union([z.string(), z.array(z.string()).length(1), z.array(z.number().int().min(0)).min(1)]),
  logprobs: z.number().int().min(0).max(20).nullish(),
  echo: z.boolean().nullish(),
});
/** Parsed completion request. */
export type CompletionRequest = z.infer<typeof CompletionRequest>;

/** `POST /v1/embeddings` body. */
export const EmbeddingRequest = z.object({
  model: z.string().nullish(),
  input: z.union([z.string(), z.array(z.string()).min(1).max(64), z.array(z.number().int().min(0)).min(1)]),
  encoding_format: z.enum(["float", "base64"]).nullish(),
  user: z.string().nullish(),
});
/** Parsed embedding request. */
export type EmbeddingRequest = z.infer<typeof EmbeddingRequest>;

/** The first issue of a zod error as `param: message`, for OpenAI-shaped errors. */
export function describeZodError(e: z.ZodError): { message: string; param: string | null } {
  const issue = e.issues[0];
  const param = issue?.path.length ? issue.path.join(".") : null;
  return { message: param ? `${param}: ${issue.message}` : (issue?.message ?? "invalid request"), param };
}

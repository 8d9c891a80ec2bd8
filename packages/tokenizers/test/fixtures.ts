/** Test helpers: fixture paths and the `.inp`/`.out` case format. */
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { readGGUFMetadata } from "./gguf-meta.js";

const here = dirname(fileURLToPath(import.meta.url));
/** Repository root (packages/tokenizers/test → ../../..). */
export const repoRoot = resolve(here, "../../..");
/** Shared fixtures directory, `../shared/fixtures` relative to the repository root. */
export const fixturesDir = resolve(repoRoot, "../shared/fixtures");

const metaCache = new Map<string, Record<string, unknown>>();
/** Read (and cache) the metadata of a fixture GGUF, path relative to the fixtures directory. */
export function fixtureMeta(rel: string): Record<string, unknown> {
  let m = metaCache.get(rel);
  if (!m) {
    m = readGGUFMetadata(resolve(fixturesDir, rel));
    metaCache.set(rel, m);
  }
  return m;
}

/** A vocab test case: input text and expected ids (without BOS). */
export interface VocabCase {
  text: string;
  ids: number[];
}

/** Read `<name>.inp` / `<name>.out` from the tokenizers fixtures. */
export function vocabCases(name: string): VocabCase[] {
  const inp = readFileSync(resolve(fixturesDir, "tokenizers", `${name}.inp`), "utf8");
  const out = readFileSync(resolve(fixturesDir, "tokenizers", `${name}.out`), "utf8");
  // every case, the last one included, is followed by a separator line
  const body = inp.replace(/\n__ggml_vocab_test__\n?$/, "");
  const texts = body.split("\n__ggml_vocab_test__\n");
  const lines = out.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  if (lines.length !== texts.length)
    throw new Error(`${name}: ${texts.length} inputs but ${lines.length} outputs`);
  return texts.map((text, i) => ({
    text,
    ids: lines[i].trim() === "" ? [] : lines[i].trim().split(/\s+/).map(Number),
  }));
}

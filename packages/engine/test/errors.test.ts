import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type GGUFWriteValue, readGGUF, serializeGGUF } from "@ryzanstein/convert";
import { GGMLType, RyzansteinError } from "@ryzanstein/core-tensor";
import { afterAll, describe, expect, it } from "vitest";
import { loadModel } from "../src/index.js";
import { storiesPath } from "./helpers.js";

const dir = mkdtempSync(join(tmpdir(), "rz-errors-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** stories260K with its metadata or tensors edited. */
function variant(
  name: string,
  edit: (
    m: Record<string, GGUFWriteValue>,
    t: Array<{ name: string; type: GGMLType; shape: number[]; data: Uint8Array }>,
  ) => void,
): string {
  const f = readGGUF(storiesPath);
  const metadata: Record<string, GGUFWriteValue> = { ...f.typedMetadata };
  const tensors = f.tensors.map((t) => ({
    name: t.name,
    type: t.type,
    shape: [...t.shape],
    data: f.tensor(t.name).data,
  }));
  edit(metadata, tensors);
  const path = join(dir, `${name}.gguf`);
  writeFileSync(path, serializeGGUF({ metadata, tensors }));
  return path;
}

async function codeOf(path: string, backend: "native" | "reference" = "native"): Promise<string> {
  try {
    const m = await loadModel(path, { backend });
    await m.dispose();
    return "OK";
  } catch (e) {
    expect(e).toBeInstanceOf(RyzansteinError);
    expect((e as Error).message.length).toBeGreaterThan(10);
    return (e as RyzansteinError).code;
  }
}

describe("loading bad models gives typed errors", () => {
  it("missing file", async () => expect(await codeOf(join(dir, "nope.gguf"))).toBe("MODEL_NOT_FOUND"));
  it("not a GGUF", async () => {
    const p = join(dir, "text.gguf");
    writeFileSync(p, "hello world, this is not a model");
    expect(await codeOf(p)).toBe("BAD_MAGIC");
  });
  it("unsupported architecture", async () => {
    expect(await codeOf(variant("arch", (m) => (m["general.architecture"] = "mamba")))).toBe(
      "UNSUPPORTED_ARCHITECTURE",
    );
  });
  it("missing required metadata", async () => {
    expect(await codeOf(variant("meta", (m) => delete m["llama.block_count"]))).toBe("MISSING_METADATA");
  });
  it("metadata that contradicts the tensors", async () => {
    expect(await codeOf(variant("ffn", (m) => (m["llama.feed_forward_length"] = 100)))).toBe(
      "SHAPE_MISMATCH",
    );
  });
  it("missing tensor", async () => {
    expect(
      await codeOf(
        variant("tensor", (_m, t) =>
          t.splice(
            t.findIndex((x) => x.name === "blk.3.ffn_up.weight"),
            1,
          ),
        ),
      ),
    ).toBe("MISSING_METADATA");
  });
  it("tensor type the engine cannot compute with", async () => {
    const path = variant("q5_1", (_m, t) => {
      const i = t.findIndex((x) => x.name === "output.weight");
      t[i] = {
        name: "output.weight",
        type: GGMLType.Q5_1,
        shape: [512, 64],
        data: new Uint8Array(512 * 2 * 24),
      };
    });
    expect(await codeOf(path, "reference")).toBe("UNSUPPORTED_TENSOR_TYPE");
  });
  it("the engine rejects a prompt longer than the context", async () => {
    const m = await loadModel(storiesPath, { contextSize: 8, threads: 1 });
    await expect(
      m.generate("Once upon a time there was a little girl named Lily", { maxTokens: 4 }).text(),
    ).rejects.toMatchObject({
      code: "CONTEXT_OVERFLOW",
    });
    // the model still works afterwards
    const ok = await m.generate("Once", { maxTokens: 3, temperature: 0 }).text();
    expect(ok.tokens.length).toBe(3);
    await m.dispose();
  });
});

import { GGMLType, RyzansteinError } from "@ryzanstein/core-tensor";
import { describe, expect, it } from "vitest";
import { parseSafetensors } from "../src/index.js";

function build(header: object, data: Uint8Array, lengthOverride?: bigint): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, lengthOverride ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

const data = new Uint8Array(Float32Array.from([1, 2, 3, 4, 5, 6]).buffer);
const header = {
  __metadata__: { format: "pt" },
  w: { dtype: "F32", shape: [2, 3], data_offsets: [0, 24] },
};

describe("safetensors", () => {
  it("reads tensors and metadata", () => {
    const f = parseSafetensors(build(header, data));
    expect(f.metadata.format).toBe("pt");
    const t = f.tensor("w");
    expect(t.type).toBe(GGMLType.F32);
    expect(Array.from(t.toF32())).toEqual([1, 2, 3, 4, 5, 6]);
  });

  const code = (bytes: Uint8Array, name = "w") => {
    try {
      parseSafetensors(bytes, { file: "model.safetensors" }).tensor(name);
      return "OK";
    } catch (e) {
      expect(e).toBeInstanceOf(RyzansteinError);
      expect((e as Error).message).toContain("model.safetensors");
      return (e as RyzansteinError).code;
    }
  };

  it("rejects bad files with typed errors naming the file", () => {
    expect(code(new Uint8Array(4))).toBe("TRUNCATED");
    expect(code(build(header, data, 10n ** 12n))).toBe("TRUNCATED");
    expect(code(build(header, data.subarray(0, 20)))).toBe("TRUNCATED");
    expect(code(build({ w: { dtype: "F32", shape: [2, 2], data_offsets: [0, 24] } }, data))).toBe(
      "SHAPE_MISMATCH",
    );
    expect(code(build({ w: { dtype: "Q9", shape: [6], data_offsets: [0, 24] } }, data))).toBe(
      "UNSUPPORTED_TENSOR_TYPE",
    );
    expect(code(build({ w: { dtype: "I32", shape: [6], data_offsets: [0, 24] } }, data))).toBe(
      "UNSUPPORTED_TENSOR_TYPE",
    );
    expect(code(build(header, data), "missing")).toBe("MISSING_METADATA");
    const bad = build(header, data);
    bad[9] = 0x7b; // corrupt JSON
    bad[10] = 0x7b;
    expect(code(bad)).toBe("BAD_METADATA");
  });
});

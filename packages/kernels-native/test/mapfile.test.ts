import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { RyzansteinError } from "@ryzanstein/core-tensor";
import { afterAll, describe, expect, it } from "vitest";
import { mapFile } from "../src/index.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "ryz-mapfile-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const distEsm = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../dist/index.js");

describe("mapFile", () => {
  it("maps a whole file zero-copy with the right bytes", () => {
    const file = path.join(dir, "data.bin");
    const bytes = Uint8Array.from({ length: 100_003 }, (_, i) => (i * 31 + 7) & 0xff);
    writeFileSync(file, bytes);
    const m = mapFile(file);
    expect(m).toBeInstanceOf(Uint8Array);
    expect(m.length).toBe(bytes.length);
    expect(m.byteOffset).toBe(0);
    expect(Buffer.from(m).equals(Buffer.from(bytes))).toBe(true);
    // usable as typed views at any aligned offset, as tensors do
    const f = new Float32Array(m.buffer, 4096, 16);
    expect(f.length).toBe(16);
  });

  it("maps an empty file to an empty array", () => {
    const file = path.join(dir, "empty.bin");
    writeFileSync(file, new Uint8Array(0));
    expect(mapFile(file).length).toBe(0);
  });

  it("throws IO_ERROR naming the path for missing files and directories", () => {
    for (const p of [path.join(dir, "missing.bin"), dir]) {
      let err: unknown;
      try {
        mapFile(p);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(RyzansteinError);
      expect((err as RyzansteinError).code).toBe("IO_ERROR");
      expect((err as RyzansteinError).file).toBe(p);
      expect((err as Error).message).toContain(p);
    }
    expect(() => mapFile("")).toThrowError(RyzansteinError);
  });

  it("unmaps the file when the array is garbage-collected", () => {
    expect(existsSync(distEsm), "run `npm run build` first: this test uses dist/").toBe(true);
    const file = path.join(dir, "gc.bin");
    writeFileSync(file, new Uint8Array(1 << 20));
    const script = `
      import { mapFile } from ${JSON.stringify(distEsm)};
      import { readFileSync } from "node:fs";
      const mapped = () => readFileSync("/proc/self/maps", "utf8").split("\\n").filter((l) => l.includes(${JSON.stringify(file)})).length;
      let keep = [];
      for (let i = 0; i < 20; i++) keep.push(mapFile(${JSON.stringify(file)}));
      const before = mapped();
      keep = null;
      for (let i = 0; i < 5; i++) { globalThis.gc(); await new Promise((r) => setTimeout(r, 10)); }
      console.log(JSON.stringify({ before, after: mapped() }));
    `;
    const out = execFileSync(process.execPath, ["--expose-gc", "--input-type=module", "-e", script], {
      encoding: "utf8",
    });
    const { before, after } = JSON.parse(out.trim().split("\n").at(-1) ?? "{}");
    expect(before).toBeGreaterThanOrEqual(20);
    expect(after).toBe(0);
  });
});

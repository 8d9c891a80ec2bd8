import { spawn } from "node:child_process";
import { join, resolve } from "node:path";
import { fixturesDir } from "@ryzanstein/test-support";
import { describe, expect, it } from "vitest";

const bin = resolve(__dirname, "../dist/bin.js");
const stories = join(fixturesDir(), "models/stories260K.gguf");

/** Runs `serve --model stories260K ...args`, which must exit before listening; its exit code and stderr. */
function serveFails(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [bin, "serve", "--model", stories, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    child.once("exit", (code) => done({ code, stderr }));
  });
}

describe("ryzanstein serve", () => {
  // No --model: the default model (headDim 64, so a q8_0 cache keeps each Q8_0 block in one head).
  it("serves completions with an API key and a q8_0 KV cache, and exits cleanly on SIGTERM", async () => {
    const child = spawn(
      process.execPath,
      [
        bin,
        "serve",
        "--port",
        "0",
        "--parallel",
        "4",
        "--ctx",
        "128",
        "--kv-memory",
        "8MB",
        "--kv-type",
        "q8_0",
        "--api-key",
        "k1",
        "--log-level",
        "silent",
      ],
      { env: { ...process.env, FORCE_COLOR: "0" }, stdio: ["ignore", "pipe", "pipe"] },
    );
    let out = "";
    let err = "";
    child.stderr.on("data", (d) => {
      err += d;
    });
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout.on("data", (d) => {
        out += d;
        const m = /at (http:\/\/\S+)\/v1/.exec(out);
        if (m) resolve(m[1]);
      });
      child.once("exit", (code) => reject(new Error(`serve exited (${code}): ${err}`)));
    });
    const res = await fetch(`${url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: "Bearer k1" },
      body: JSON.stringify({ prompt: "In the beginning", max_tokens: 8, temperature: 0 }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { choices: { text: string }[] };
    expect(body.choices[0].text.length).toBeGreaterThan(0);
    const code = await new Promise<number | null>((resolve) => {
      child.once("exit", resolve);
      child.kill("SIGTERM");
    });
    expect(code).toBe(0);
    expect(out).toMatch(/draining/);
    // --kv-memory sized by the q8_0 block: the default model has 4 layers and K/V rows of 256 values (272 bytes)
    expect(out).toContain(`${Math.floor((8 * 2 ** 20) / (2 * 4 * 16 * 272))} q8_0 KV blocks of 16`);
  });

  it("rejects an unknown --kv-type", async () => {
    const r = await serveFails(["--kv-type", "q4_0"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/--kv-type.*q4_0.*f16, f32, q8_0/s);
  });

  it("rejects --kv-blocks with --kv-memory and a bad size", async () => {
    const r = await serveFails(["--kv-memory", "lots"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/cannot read a size/);
  });
});

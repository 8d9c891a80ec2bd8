import { GGUFFile, type GGUFValue } from "@ryzanstein/convert";
import { typeName } from "@ryzanstein/core-tensor";
import { openModelFile } from "@ryzanstein/engine";

function show(v: GGUFValue): string {
  if (Array.isArray(v) || ArrayBuffer.isView(v)) {
    const items = Array.from(v as ArrayLike<unknown>);
    const head = items.slice(0, 8).map((x) => JSON.stringify(typeof x === "bigint" ? x.toString() : x));
    return `[${head.join(", ")}${items.length > 8 ? `, … (${items.length} items)` : ""}]`;
  }
  if (typeof v === "bigint") return v.toString();
  if (typeof v === "string") return JSON.stringify(v.length > 200 ? `${v.slice(0, 200)}…` : v);
  return String(v);
}

/** `ryzanstein info PATH`: prints metadata and the tensor table of a GGUF file or HF folder (or JSON with `--json`). */
export function infoCommand(
  path: string,
  o: { json?: boolean },
  out: NodeJS.WritableStream = process.stdout,
): void {
  const gguf = openModelFile(path);
  const tensors = gguf.tensors.map((t) => ({
    name: t.name,
    type: typeName(t.type),
    shape: t.shape,
    bytes: t.byteLength,
  }));
  if (o.json) {
    const metadata = Object.fromEntries(
      Object.entries(gguf.metadata).map(([k, v]) => [
        k,
        ArrayBuffer.isView(v) || Array.isArray(v)
          ? `array(${(v as ArrayLike<unknown>).length})`
          : typeof v === "bigint"
            ? v.toString()
            : v,
      ]),
    );
    const header =
      gguf instanceof GGUFFile
        ? { version: gguf.version, alignment: gguf.alignment }
        : { format: "hf-folder" };
    out.write(`${JSON.stringify({ ...header, metadata, tensors })}\n`);
    return;
  }
  const kind = gguf instanceof GGUFFile ? `GGUF v${gguf.version}` : "HuggingFace folder (GGUF names)";
  out.write(
    `${kind}, ${gguf.tensors.length} tensors, ${Object.keys(gguf.metadata).length} metadata keys\n\n`,
  );
  for (const [k, v] of Object.entries(gguf.metadata)) out.write(`${k} = ${show(v)}\n`);
  out.write("\n");
  const total = tensors.reduce((a, t) => a + t.bytes, 0);
  const nameWidth = Math.max(...tensors.map((t) => t.name.length), 4);
  for (const t of tensors) {
    out.write(
      `${t.name.padEnd(nameWidth)}  ${t.type.padEnd(6)}  ${`[${t.shape.join(", ")}]`.padEnd(16)}  ${t.bytes}\n`,
    );
  }
  out.write(`\n${(total / 2 ** 20).toFixed(2)} MiB of tensor data\n`);
}

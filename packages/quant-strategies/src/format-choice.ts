import {
  type ComputeFormat,
  FORMAT_TRAITS,
  GGMLType,
  isComputeFormat,
  llamaFileType,
  RyzansteinError,
  TYPE_INFO,
  typeFromName,
  typeName,
} from "@ryzanstein/core-tensor";

/** Bits per weight of a format (block bytes × 8 / block elements). */
export function bitsPerWeight(type: ComputeFormat): number {
  const info = TYPE_INFO[type];
  return (info.typeSize * 8) / info.blockSize;
}

/** Traits rows llama.cpp stores weights in (not the activation formats Q8_1/Q8_K). */
function weightFormats(): ComputeFormat[] {
  return (Object.keys(FORMAT_TRAITS).map(Number) as ComputeFormat[]).filter(
    (t) => llamaFileType(t) !== undefined,
  );
}

/** True for the ternary formats (TQ*), which only suit models trained for them. */
function isTernary(type: ComputeFormat): boolean {
  return TYPE_INFO[type].name.toLowerCase().startsWith("tq");
}

/**
 * Formats a tensor may fall back to, or a mixed plan may pick, ordered by bits per weight:
 * every traits row except the ternary ones, BF16 and F32 (F16 fits every row length).
 */
export function fallbackLadder(): ComputeFormat[] {
  return weightFormats()
    .filter((t) => !isTernary(t) && t !== GGMLType.F32 && t !== GGMLType.BF16)
    .sort((a, b) => bitsPerWeight(a) - bitsPerWeight(b) || TYPE_INFO[a].blockSize - TYPE_INFO[b].blockSize);
}

/** True when rows of `cols` elements are whole blocks of `type`. */
export function fitsFormat(type: ComputeFormat, cols: number): boolean {
  return cols % TYPE_INFO[type].blockSize === 0;
}

/**
 * The format a matrix with rows of `cols` elements gets when `requested` was asked for: the
 * requested one when its blocks fit, else the smallest format of at least as many bits per weight
 * whose blocks fit (e.g. Q4_K → Q4_0 for rows of 64, Q4_0 → F16 for rows of 172).
 */
export function fitFormat(requested: ComputeFormat, cols: number): ComputeFormat {
  if (fitsFormat(requested, cols)) return requested;
  const bits = bitsPerWeight(requested);
  const next = fallbackLadder().find((t) => bitsPerWeight(t) >= bits && fitsFormat(t, cols));
  return next ?? GGMLType.F32;
}

/** Block formats weights can be quantized to (every weight-format traits row except F32/F16/BF16). */
export function quantTypes(): ComputeFormat[] {
  return weightFormats().filter((t) => TYPE_INFO[t].blockSize > 1);
}

/**
 * Parses a weight format name such as `q4_k` (case-insensitive). Throws INVALID_ARGUMENT naming
 * the choices when it is not a format weights can be stored in.
 */
export function parseFormat(name: string, allowFloat = true): ComputeFormat {
  const t = typeFromName(name);
  const choices = allowFloat ? weightFormats() : quantTypes();
  if (t === undefined || !isComputeFormat(t) || !choices.includes(t)) {
    throw new RyzansteinError(
      "INVALID_ARGUMENT",
      `${name} is not a weight format: choose one of ${choices.map((c) => typeName(c).toLowerCase()).join(", ")}`,
    );
  }
  return t;
}

/** Bytes of a `[rows, cols]` matrix in `type`. */
export function matrixBytes(type: ComputeFormat, rows: number, cols: number): number {
  const info = TYPE_INFO[type];
  return rows * (cols / info.blockSize) * info.typeSize;
}

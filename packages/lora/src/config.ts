/** LoRA configuration and the weights it targets. */
import { RyzansteinError } from "@ryzanstein/core-tensor";

/** Module names a target may use (GGUF tensor names without `blk.N.` and `.weight`). */
export const LORA_MODULES: readonly string[] = Object.freeze([
  "attn_q",
  "attn_k",
  "attn_v",
  "attn_output",
  "ffn_gate",
  "ffn_up",
  "ffn_down",
  "output",
]);

/** LoRA hyper-parameters. */
export interface LoraConfig {
  /** Rank r of each adapter (≥ 1). */
  rank: number;
  /** Scale numerator: the adapter adds `(alpha / rank)·B·A`. */
  alpha: number;
  /** Dropout probability on the adapter input during training (default 0). */
  dropout?: number;
  /**
   * Target modules by name pattern: a module name (`attn_q`, matching every layer), a full tensor
   * name (`blk.0.attn_v.weight`), or a pattern with `*` (`blk.1*.ffn_*`). Default `attn_q`, `attn_v`.
   */
  targetModules?: string[];
}

function globToRegExp(p: string): RegExp {
  return new RegExp(`^${p.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*")}$`);
}

/**
 * Validates `cfg` and returns the names of the weights it targets among `weightNames`.
 *
 * @throws RyzansteinError `INVALID_ARGUMENT` for a rank below 1, a bad alpha or dropout, or a
 *   pattern that matches no weight (naming the modules that exist).
 */
export function resolveTargets(cfg: LoraConfig, weightNames: readonly string[]): string[] {
  if (!Number.isInteger(cfg.rank) || cfg.rank < 1) {
    throw new RyzansteinError("INVALID_ARGUMENT", `LoRA rank must be an integer ≥ 1, got ${cfg.rank}`);
  }
  if (!Number.isFinite(cfg.alpha) || cfg.alpha <= 0) {
    throw new RyzansteinError("INVALID_ARGUMENT", `LoRA alpha must be positive, got ${cfg.alpha}`);
  }
  const dropout = cfg.dropout ?? 0;
  if (!(dropout >= 0 && dropout < 1)) {
    throw new RyzansteinError("INVALID_ARGUMENT", `LoRA dropout must be in [0, 1), got ${dropout}`);
  }
  const matrices = weightNames.filter((n) =>
    LORA_MODULES.some((m) => n === `${m}.weight` || n.endsWith(`.${m}.weight`)),
  );
  const out = new Set<string>();
  for (const t of cfg.targetModules ?? ["attn_q", "attn_v"]) {
    const re = t.includes("*") || t.includes(".") ? globToRegExp(t) : null;
    const hits = matrices.filter((n) =>
      re
        ? re.test(n) ||
          re.test(n.replace(/\.weight$/, "")) ||
          re.test(n.replace(/^blk\.\d+\./, "").replace(/\.weight$/, ""))
        : n === `${t}.weight` || n.endsWith(`.${t}.weight`),
    );
    if (hits.length === 0) {
      throw new RyzansteinError(
        "INVALID_ARGUMENT",
        `unknown target module '${t}': it matches no weight of the model (modules: ${LORA_MODULES.join(", ")})`,
      );
    }
    for (const h of hits) out.add(h);
  }
  return matrices.filter((n) => out.has(n));
}

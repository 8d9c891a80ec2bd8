import { RyzansteinError, type Tensor } from "@ryzanstein/core-tensor";
import type { GGUFTensorInfo, GGUFValue } from "./gguf-types.js";
import type { GGUFWriteValue } from "./gguf-writer.js";

/** A tensor table entry: what a model source knows about a tensor before reading it. */
export type TensorInfo = Pick<GGUFTensorInfo, "name" | "type" | "shape" | "byteLength">;

/**
 * A model as the engine reads it: GGUF-named metadata and tensors. A GGUF file is one; a
 * HuggingFace folder is another (its config and tensors mapped to GGUF names on the fly), so the
 * engine and the GGUF writer take either.
 */
export abstract class ModelSource {
  /** Metadata values by GGUF key. */
  abstract readonly metadata: Record<string, GGUFValue>;
  /** Tensor table, in the order a GGUF export writes it. */
  abstract readonly tensors: readonly TensorInfo[];
  /** File or folder name, for messages. */
  abstract readonly file: string | undefined;
  /** A `Tensor` over the data of `name`, zero-copy where the layout allows. */
  abstract tensor(name: string): Tensor;
  /** The metadata with the exact GGUF value types a writer should use. */
  abstract writableMetadata(): Record<string, GGUFWriteValue>;

  private index: Map<string, TensorInfo> | undefined;

  /** Tensor table entry by name, or undefined. */
  info(name: string): TensorInfo | undefined {
    this.index ??= new Map(this.tensors.map((t) => [t.name, t]));
    return this.index.get(name);
  }

  /** True when the model has a tensor of this name. */
  has(name: string): boolean {
    return this.info(name) !== undefined;
  }

  /** A metadata value, or undefined. */
  get(key: string): GGUFValue | undefined {
    return this.metadata[key];
  }

  /** A required string value; throws MISSING_METADATA / BAD_METADATA otherwise. */
  getString(key: string): string {
    const v = this.require(key);
    if (typeof v !== "string") throw this.badType(key, "a string");
    return v;
  }

  /** A required numeric value (any integer or float type); throws MISSING_METADATA / BAD_METADATA otherwise. */
  getNumber(key: string): number {
    const v = this.require(key);
    if (typeof v === "bigint") return Number(v);
    if (typeof v !== "number") throw this.badType(key, "a number");
    return v;
  }

  /** An optional numeric value with a default. */
  getNumberOr(key: string, fallback: number): number {
    return key in this.metadata ? this.getNumber(key) : fallback;
  }

  /** Throws MISSING_METADATA naming the tensor. */
  protected missingTensor(name: string): never {
    throw new RyzansteinError("MISSING_METADATA", `tensor ${name} not found`, { file: this.file });
  }

  private require(key: string): GGUFValue {
    const v = this.metadata[key];
    if (v === undefined) {
      throw new RyzansteinError("MISSING_METADATA", `required metadata key ${key} is missing`, {
        file: this.file,
      });
    }
    return v;
  }

  private badType(key: string, what: string): RyzansteinError {
    return new RyzansteinError("BAD_METADATA", `metadata key ${key} should be ${what}`, { file: this.file });
  }
}

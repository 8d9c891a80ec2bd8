import { type ComputeFormat, RyzansteinError } from "@ryzanstein/core-tensor";
import { parseFormat } from "@ryzanstein/quant-strategies";
import { InvalidArgumentError } from "commander";

/** Parses an integer option, rejecting junk with a clear message. */
export function intOption(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max)
      throw new InvalidArgumentError(`expected an integer from ${min} to ${max}`);
    return n;
  };
}

/** Parses a float option within bounds. */
export function floatOption(min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isFinite(n) || n < min || n > max)
      throw new InvalidArgumentError(`expected a number from ${min} to ${max}`);
    return n;
  };
}

/** Parses a comma-separated list of integers (`1,2`), each within bounds. */
export function intListOption(min: number, max = Number.MAX_SAFE_INTEGER) {
  const one = intOption(min, max);
  return (value: string): number[] => value.split(",").map((v) => one(v.trim()));
}

/** Parses `--type`, naming the option in the error. */
export function typeOption(name: string): ComputeFormat {
  try {
    return parseFormat(name);
  } catch (e) {
    throw new RyzansteinError("INVALID_ARGUMENT", `--type ${(e as Error).message}`);
  }
}

/**
 * `@ryzanstein/quant-strategies`: every way of turning float weights into a smaller format behind
 * one `QuantizationStrategy` registry (RTN, GPTQ, AWQ, mixed precision, auto-selection), the
 * calibration engine that feeds them, and perplexity/validation against the unquantized model.
 *
 * @packageDocumentation
 */
export type { CalibrationData, CalibrationOptions, InputStats } from "./calibration.js";
export { collectCalibration, inputGroupOf } from "./calibration.js";
export type { ElementCodec } from "./codecs.js";
export { ELEMENT_CODECS } from "./codecs.js";
export type { FloatModel, FloatTensor } from "./float-model.js";
export { cloneFloatModel, isQuantizable, readFloatModel } from "./float-model.js";
export {
  bitsPerWeight,
  fallbackLadder,
  fitFormat,
  fitsFormat,
  matrixBytes,
  parseFormat,
  quantTypes,
} from "./format-choice.js";
export type { LogitsFunction, PerplexityOptions, PerplexityResult } from "./perplexity.js";
export { negativeLogLikelihood, perplexity } from "./perplexity.js";
export type { QuantizedModel, QuantizeOptions, QuantizeProgress, TensorReport } from "./quantize-model.js";
export {
  decodedModelSource,
  ggufFileBytes,
  minimumFileBytes,
  quantizedModelSource,
  quantizeModel,
  serializeQuantizedModel,
  writeQuantizedModel,
} from "./quantize-model.js";
export { relativeRoundingError } from "./sensitivity.js";
export type { AwqGroup, AwqGroupResult, AwqOptions } from "./strategies/awq.js";
export { applyAwq, awqGroups, clipBlocks } from "./strategies/awq.js";
export type { GptqOptions } from "./strategies/gptq.js";
export { checkGptqGroupSize, gptqQuantize, gptqSupports } from "./strategies/gptq.js";
export type { MixedPlan, MixedPlanOptions } from "./strategies/mixed.js";
export { describePlan, mixedCandidates, planMixedFormats } from "./strategies/mixed.js";
export type {
  EncodingMethod,
  QuantizationStrategy,
  StrategyContext,
  StrategyName,
} from "./strategies/registry.js";
export { getStrategy, STRATEGIES } from "./strategies/registry.js";
export { dequantizeMatrix, rtnQuantize } from "./strategies/rtn.js";
export type { ValidationResult, ValidatorOptions } from "./validator.js";
export { openScoringSession, QuantizationValidator } from "./validator.js";

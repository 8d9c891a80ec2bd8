export { main } from "./program.js";
export { MODEL_ENV, resolveModelPath } from "./resolve-model.js";

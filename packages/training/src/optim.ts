/** AdamW with bias correction and decoupled weight decay, gradient clipping and the LR schedule. */

/** Optimizer hyper-parameters. */
export interface AdamWOptions {
  /** β₁ (default 0.9). */
  beta1?: number;
  /** β₂ (default 0.95). */
  beta2?: number;
  /** ε (default 1e-8). */
  eps?: number;
  /** Decoupled weight decay (default 0.1), applied where `decayMask` is 1. */
  weightDecay?: number;
}

/** AdamW state over one flat parameter buffer. */
export class AdamW {
  /** First moments. */
  readonly m: Float32Array;
  /** Second moments. */
  readonly v: Float32Array;
  /** Updates applied so far (the bias-correction step). */
  t = 0;
  private readonly o: Required<AdamWOptions>;
  private readonly decay: Uint8Array;

  constructor(size: number, decayMask: Uint8Array, options: AdamWOptions = {}) {
    this.m = new Float32Array(size);
    this.v = new Float32Array(size);
    this.decay = decayMask;
    this.o = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, ...options };
  }

  /** One update of `params` from `grads` at learning rate `lr`. */
  step(params: Float32Array, grads: Float32Array, lr: number): void {
    const { beta1, beta2, eps, weightDecay } = this.o;
    this.t++;
    const bc1 = 1 - beta1 ** this.t;
    const bc2 = 1 - beta2 ** this.t;
    const m = this.m;
    const v = this.v;
    for (let i = 0; i < params.length; i++) {
      const g = grads[i];
      m[i] = beta1 * m[i] + (1 - beta1) * g;
      v[i] = beta2 * v[i] + (1 - beta2) * g * g;
      const update = m[i] / bc1 / (Math.sqrt(v[i] / bc2) + eps);
      params[i] -= lr * (update + (this.decay[i] ? weightDecay * params[i] : 0));
    }
  }
}

/** Scales `grads` so their global L2 norm is at most `maxNorm`; returns the norm before clipping. */
export function clipGradNorm(grads: Float32Array, maxNorm: number): number {
  let ss = 0;
  for (let i = 0; i < grads.length; i++) ss += grads[i] * grads[i];
  const norm = Math.sqrt(ss);
  if (maxNorm > 0 && norm > maxNorm) {
    const s = maxNorm / norm;
    for (let i = 0; i < grads.length; i++) grads[i] *= s;
  }
  return norm;
}

/** Linear warmup to `lr` over `warmup` steps, then cosine decay to `minLr` at `total`. */
export function learningRate(step: number, total: number, lr: number, warmup: number, minLr: number): number {
  if (step < warmup) return (lr * (step + 1)) / warmup;
  if (total <= warmup) return lr;
  const p = Math.min(1, (step - warmup) / Math.max(1, total - warmup));
  return minLr + 0.5 * (lr - minLr) * (1 + Math.cos(Math.PI * p));
}

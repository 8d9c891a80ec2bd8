// Deterministic float inputs for the ggml golden test: 12 blocks of 256 values covering the
// quantizers' edge paths (zeros, constants, one-signed blocks, ties on a grid, outliers, tiny values).

function xorshift(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return (s + 0.5) / 4294967296;
  };
}

/** The golden input: 12 × 256 float32 values. */
export function goldenInput(): Float32Array {
  const u = xorshift(20261126);
  const g = () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  const out = new Float32Array(12 * 256);
  const seg: Array<(j: number) => number> = [
    () => g(),
    () => 0.02 * g(),
    () => 2 * u() - 1,
    () => 0,
    () => 0.5,
    (j) => (j % 37 === 5 ? 20 * g() : g()),
    () => u(),
    () => -u(),
    () => 1e-6 * g(),
    () => 0.25 * (Math.floor(u() * 9) - 4),
    () => 3 * g(),
    () => (u() < 0.9 ? 0 : g()),
  ];
  for (let b = 0; b < 12; b++) for (let j = 0; j < 256; j++) out[b * 256 + j] = seg[b](j);
  return out;
}

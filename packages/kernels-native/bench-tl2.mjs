import { GGMLType, Tensor } from "@ryzanstein/core-tensor";
import { NativeBackend } from "./dist/index.js";
const rows = 512, cols = 2048;
const d = new Float32Array(rows * cols); for (let j = 0; j < d.length; j++) d[j] = Math.random() * 2 - 1;
const w = Tensor.fromF32([rows, cols], d, GGMLType.TQ2_0);
const x = Float32Array.from({ length: cols }, () => Math.random() * 2 - 1);
const y = new Float32Array(rows);
for (let rep = 0; rep < 3; rep++) for (const repack of [false, true]) {
  const b = new NativeBackend({ threads: 1, repack });
  b.prepareWeight(w, false);
  const times = [];
  for (let r = 0; r < 30; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < 100; i++) b.matmul(y, w, x, 1);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  times.sort((a, b) => a - b);
  console.log(`in-cache repack ${repack}: best ${(rows*cols*100/times[0]/1e6).toFixed(1)} Gw/s`);
  b.dispose();
}

// temp microbench (not committed)
import { GGMLType, Tensor } from "@ryzanstein/core-tensor";
import { NativeBackend } from "./dist/index.js";
const rows = 5632, cols = 2048, count = 48;
const ws = [];
for (let i = 0; i < count; i++) {
  const d = new Float32Array(rows * cols); for (let j = 0; j < d.length; j++) d[j] = Math.random() * 2 - 1;
  ws.push(Tensor.fromF32([rows, cols], d, GGMLType.TQ2_0));
}
const x = Float32Array.from({ length: cols }, () => Math.random() * 2 - 1);
const y = new Float32Array(rows);
for (const threads of [1, 2]) for (const repack of [false, true]) {
  const b = new NativeBackend({ threads, repack });
  for (const w of ws) b.prepareWeight(w, false);
  const times = [];
  for (let r = 0; r < 15; r++) {
    const t0 = process.hrtime.bigint();
    for (const w of ws) b.matmul(y, w, x, 1);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  times.sort((a, b) => a - b);
  const weights = rows * cols * count;
  console.log(`threads ${threads} repack ${repack}: best ${times[0].toFixed(2)} ms median ${times[7].toFixed(2)} ms -> ${(weights / times[0] / 1e6).toFixed(2)} Gw/s best, ${(weights/times[7]/1e6).toFixed(2)} median; bytes/w ${repack ? 1.75/8 : 66/256}`);
  b.dispose();
}

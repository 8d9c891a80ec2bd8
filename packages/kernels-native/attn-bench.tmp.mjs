// temporary microbench: 16 decode rows, 12 layers of an F16 paged cache, MHA 12x64, block 16
import { NativeBackend } from "./dist/index.js";
const threads = Number(process.env.T ?? 2), ctxLen = Number(process.env.CTX ?? 96), rowsN = Number(process.env.N ?? 16);
const layers = 12, nh = 12, hd = 64, bs = 16, maxBlocks = 16, nSeqs = 16;
const nBlocks = nSeqs * maxBlocks;
const kvRow = nh * hd;
const nb = new NativeBackend({ threads });
let seed = 12345;
const R = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 4294967296);
const rnd = () => R() * 2 - 1;
const half = (n) => { const a = new Uint16Array(n); for (let i = 0; i < n; i++) a[i] = 0x3000 + ((R() * 0x1000) | 0) | (R() < 0.5 ? 0x8000 : 0); return a; };
const K = [], Vv = [];
for (let l = 0; l < layers; l++) { K.push(half(nBlocks * bs * kvRow)); Vv.push(half(nBlocks * bs * kvRow)); }
// scattered block tables (like a server's pool)
const perm = Array.from({ length: nBlocks }, (_, i) => i).sort(() => R() - 0.5);
const tables = Int32Array.from(perm);
const q = Float32Array.from({ length: rowsN * kvRow }, rnd);
const out = new Float32Array(rowsN * kvRow);
const seqOfRow = Int32Array.from({ length: rowsN }, (_, i) => i);
const params = { nHeads: nh, nKvHeads: nh, headDim: hd, scale: 0.125, blockSize: bs, maxBlocksPerSeq: maxBlocks };
const times = [];
for (let it = 0; it < 100; it++) {
  const positions = Int32Array.from({ length: rowsN }, (_, i) => ctxLen - 1 - ((i * 5 + it) % 8));
  const t0 = performance.now();
  for (let l = 0; l < layers; l++) nb.pagedAttention(out, q, K[l], Vv[l], positions, seqOfRow, tables, rowsN, params);
  times.push(performance.now() - t0);
}
times.sort((a, b) => a - b);
let cs = 0; for (let i = 0; i < out.length; i++) cs += out[i] * (i % 7 + 1);
console.log(`rows=${rowsN} ctx=${ctxLen} threads=${threads}: median ${times[50].toFixed(3)} ms, p10 ${times[10].toFixed(3)} (12 layers)  checksum ${cs}`);

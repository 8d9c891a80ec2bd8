// Training kernels (backward pass support): a strided F32 GEMM and causal GQA attention forward and
// backward over packed fixed-length sequences. One table per ISA, chosen at run time like the
// inference kernels (dispatch.h); compiled in train_generic.cpp (no flags) and train_avx2.cpp.
#pragma once

#include <cstdint>

#include "common.h"

namespace ryz {

/**
 * C[M,N] (+)= A·B where A(i,k) = a[i*a_rs + k*a_cs] and B(k,j) = b[k*b_rs + j*b_cs]; C is row-major
 * with row stride ldc. Work is split over threads by column blocks [j0, j1).
 */
struct GemmArgs {
  int64_t m, n, k;
  const float* a;
  int64_t a_rs, a_cs;
  const float* b;
  int64_t b_rs, b_cs;
  float* c;
  int64_t ldc;
  bool accumulate;
};

/**
 * A frozen weight W[rows, cols] in its storage format: F32, F16, BF16, Q8_0 or Q4_0 in the ggml
 * file layout, or Q8_0 / Q4_0 in the repacked layout of repack.h (`packed`).
 */
struct FrozenWeight {
  int fmt;
  bool packed;
  const uint8_t* data;
  int64_t rows, cols;
};

/**
 * C[m, w.cols] (+)= A[m, w.rows] · W with A row-major (row stride a_rs): the input gradient of a
 * linear layer through a frozen weight. W is decoded 16 columns at a time into the GEMM's packed
 * panel, so it is never expanded to F32 as a whole.
 */
struct FrozenGemmArgs {
  int64_t m;
  const float* a;
  int64_t a_rs;
  FrozenWeight w;
  float* c;
  bool accumulate;
};

/** Causal attention over `batch` independent sequences of `seq` tokens. */
struct AttnArgs {
  int64_t batch, seq, n_heads, n_kv_heads, head_dim;
  float scale;
};

struct TrainKernels {
  /** Column blocks [j0, j1) (in units of 16 columns) of a GEMM; `scratch` holds ≥ 256*16 floats. */
  void (*gemm)(const GemmArgs& g, int64_t jb0, int64_t jb1, float* scratch);
  /** Column blocks [jb0, jb1) (units of 16 columns of W) of a frozen-weight GEMM; panel >= 256*16 floats. */
  void (*gemm_frozen)(const FrozenGemmArgs& g, int64_t jb0, int64_t jb1, float* panel);
  /**
   * out[b*seq+i, h*hd..] = softmax(scale q·k) v for the (b, kv-head) pairs [p0, p1); probs keeps
   * the probabilities [batch, n_heads, seq, seq] (row i holds i+1 valid entries) for the backward.
   */
  void (*attn_fwd)(const AttnArgs& a, const float* q, const float* k, const float* v, float* out, float* probs,
                   int64_t p0, int64_t p1);
  /** Gradients of q, k, v (overwritten) for the (b, kv-head) pairs [p0, p1); scratch ≥ seq floats. */
  void (*attn_bwd)(const AttnArgs& a, const float* q, const float* k, const float* v, const float* probs,
                   const float* dout, float* dq, float* dk, float* dv, int64_t p0, int64_t p1, float* scratch);
  /** Rows [r0, r1): y = x / rms(x) * w. */
  void (*rms_norm)(float* y, const float* x, const float* w, int64_t dim, float eps, int64_t r0, int64_t r1);
  /** Rows [r0, r1): dx += ∂/∂x, dw_partial += ∂/∂w (one partial per thread, summed by the caller). */
  void (*rms_norm_bwd)(float* dx, float* dw_partial, const float* dy, const float* x, const float* w, int64_t dim,
                       float eps, int64_t r0, int64_t r1);
  /** Rows [r0, r1), position r % seq: Llama (adjacent-pair) RoPE in place; sign -1 is the backward. */
  void (*rope)(float* x, int64_t seq, int64_t n_heads, int64_t head_dim, double freq_base, int sign, int64_t r0,
               int64_t r1);
  /** Elements [i0, i1): out = silu(gate) * up. */
  void (*swiglu)(float* out, const float* gate, const float* up, int64_t i0, int64_t i1);
  /** Elements [i0, i1): gradients of gate and up (overwritten). */
  void (*swiglu_bwd)(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t i0,
                     int64_t i1);
  /** Rows [r0, r1): summed softmax cross-entropy (targets < 0 ignored); dlogits = scale·(p − onehot) if given. */
  double (*cross_entropy)(const float* logits, const int32_t* targets, int64_t vocab, float* dlogits, float scale,
                          int64_t r0, int64_t r1);
  /** Columns [c0, c1) of every row: dtable[ids[r]] += dy[r] (split by columns, so no races). */
  void (*embedding_bwd)(float* dtable, const float* dy, const int32_t* ids, int64_t n, int64_t dim, int64_t c0,
                        int64_t c1);
};

const TrainKernels* train_kernels_generic();
const TrainKernels* train_kernels_avx2();
/** The table of a variant (AVX-512 uses the AVX2 table); throws when the CPU lacks it. */
const TrainKernels* train_kernels_for(Isa isa);

}  // namespace ryz

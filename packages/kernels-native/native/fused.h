// Layouts of pre-converted activations for the fused steps (fused.cpp). A matmul converts its
// float activations to the weight format's vecDotType before the dot products; a fused step writes
// that converted form directly, once, in the pass that produces the values (RMSNorm, SwiGLU), and
// every matmul reading the same input (Q, K and V; gate and up) uses it without converting again.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ryz {

/** Activation layouts; the ids cross into TypeScript (ActivationBuffer.layout). */
enum ActLayout : int {
  kActQ8Tile = 0,  // Q8 act rows of qgemm_x86.h (Q4_0 / Q8_0 weights): qs | f32 d | i32 sums
  kActQ8_0 = 1,    // block_q8_0[cols/32] (Q5_0 weights)
  kActQ8_1 = 2,    // block_q8_1[cols/32] (Q4_1 weights)
  kActQ8_K = 3,    // block_q8_K[cols/256] (K-quants, TQ1_0, TQ2_0)
  kActLayouts = 4,
};

}  // namespace ryz

// AVX-512 (VL + VNNI) build of kquants_x86.inc: `vpdpbusd` for the ternary dot products.
#include "kquants_x86.inc"

namespace ryz {
const KQuantKernels* kquants_avx512() { return &kTable; }
}  // namespace ryz

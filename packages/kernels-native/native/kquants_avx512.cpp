// AVX-512 build of kquants_x86.inc (same 256-bit algorithm, compiled with the AVX-512 flags).
#include "kquants_x86.inc"

namespace ryz {
const KQuantKernels* kquants_avx512() { return &kTable; }
}  // namespace ryz

// AVX2 build of kquants_x86.inc.
#include "kquants_x86.inc"

namespace ryz {
const KQuantKernels* kquants_avx2() { return &kTable; }
}  // namespace ryz

// Portable scalar training kernels (the reference variant). Compiled without ISA flags.
#include <algorithm>
#include <cmath>

#include "train_kernels.h"

namespace {
void micro_4x16(const ryz::GemmArgs& g, int64_t i, int64_t k0, int64_t kc, const float* panel, float* tile) {
  for (int64_t kk = 0; kk < kc; kk++) {
    const float* p = panel + kk * 16;
    for (int r = 0; r < 4; r++) {
      const float av = g.a[(i + r) * g.a_rs + (k0 + kk) * g.a_cs];
      float* t = tile + r * 16;
      for (int j = 0; j < 16; j++) t[j] += av * p[j];
    }
  }
}
}  // namespace

#define RYZ_TRAIN_NS train_kernels_generic
#include "train_impl.inc"

#include <stdexcept>
#include <string>

#include "dispatch.h"

namespace ryz {
const TrainKernels* train_kernels_for(Isa isa) {
  if (!cpu_supports(isa)) {
    throw std::invalid_argument(std::string("ISA '") + isa_name(isa) + "' is not supported by this CPU");
  }
  return isa == Isa::Scalar ? train_kernels_generic() : train_kernels_avx2();
}
}  // namespace ryz

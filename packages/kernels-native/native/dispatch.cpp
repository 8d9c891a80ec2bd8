#include "dispatch.h"

#include <stdexcept>

namespace ryz {

bool cpu_supports(Isa isa) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  switch (isa) {
    case Isa::Scalar:
      return true;
    case Isa::Avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    case Isa::Avx512:
#ifdef RYZ_EMULATED_AVX512
      return cpu_supports(Isa::Avx2);  // test build: the avx512 kernels run on SIMDe (CMakeLists.txt)
#endif
      return cpu_supports(Isa::Avx2) && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bf16");
  }
  return false;
#else
  return isa == Isa::Scalar;
#endif
}

std::vector<Isa> available_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) {
    if (cpu_supports(isa)) out.push_back(isa);
  }
  return out;
}

Isa best_isa() { return available_isas().back(); }

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
  }
  return "unknown";
}

bool parse_isa(const std::string& name, Isa* out) {
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) {
    if (name == isa_name(isa)) {
      *out = isa;
      return true;
    }
  }
  return false;
}

const Kernels* kernels_for(Isa isa) {
  if (!cpu_supports(isa)) {
    throw std::invalid_argument(std::string("ISA '") + isa_name(isa) + "' is not supported by this CPU");
  }
  switch (isa) {
    case Isa::Scalar: return kernels_generic();
    case Isa::Avx2: return kernels_avx2();
    case Isa::Avx512: return kernels_avx512();
  }
  throw std::invalid_argument("unknown ISA");
}

}  // namespace ryz

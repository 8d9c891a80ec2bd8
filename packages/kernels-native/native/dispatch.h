// Run-time choice of the kernel variant. Compiled without ISA flags.
#pragma once

#include <string>
#include <vector>

#include "common.h"

namespace ryz {

/** True when this CPU (and OS) can run the variant. */
bool cpu_supports(Isa isa);
/** Variants this CPU can run, scalar first. */
std::vector<Isa> available_isas();
/** The most capable variant this CPU can run. */
Isa best_isa();
/** `scalar`, `avx2`, `avx512`. */
const char* isa_name(Isa isa);
/** Parses a name from isa_name(); false when unknown. */
bool parse_isa(const std::string& name, Isa* out);
/** The kernel table of a variant; throws std::invalid_argument when the CPU lacks it. */
const Kernels* kernels_for(Isa isa);

}  // namespace ryz

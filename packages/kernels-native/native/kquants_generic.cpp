// Scalar reference kernels of the K-quant, ternary, Q4_1 and Q5_0 formats (kquants.h).
#include "kquants.h"
#include "ternary_lut.h"

namespace ryz {
namespace {

const KQuantKernels kTable = {
    conv_q8_k_ref,
    conv_q8_1_act,
    {dot_q4_1_ggml, dot_q5_0_ggml, dot_q2_k_ggml, dot_q3_k_ggml, dot_q4_k_ggml, dot_q5_k_ggml, dot_k_ref<AQ6K>,
     dot_tq_ggml<ATQ1>, dot_tq_ggml<ATQ2>},
    {dequant_q4_1_ref, dequant_q5_0_ref, dequant_q2_k_ref, dequant_q3_k_ref, dequant_q4_k_ref, dequant_q5_k_ref,
     dequant_q6_k_ref, dequant_tq1_0_ref, dequant_tq2_0_ref},
    conv_tl_ref,
    gemm_tl_ref,
};

}  // namespace

const KQuantKernels* kquants_generic() { return &kTable; }

}  // namespace ryz

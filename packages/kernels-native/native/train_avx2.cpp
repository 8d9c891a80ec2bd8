// AVX2 + FMA training kernels: an FMA micro-kernel for the GEMM (4 rows x 16 columns held in eight
// ymm accumulators); the attention loops are the shared code, auto-vectorized with these flags.
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "train_kernels.h"

namespace {
void micro_4x16(const ryz::GemmArgs& g, int64_t i, int64_t k0, int64_t kc, const float* panel, float* tile) {
  __m256 c00 = _mm256_loadu_ps(tile), c01 = _mm256_loadu_ps(tile + 8);
  __m256 c10 = _mm256_loadu_ps(tile + 16), c11 = _mm256_loadu_ps(tile + 24);
  __m256 c20 = _mm256_loadu_ps(tile + 32), c21 = _mm256_loadu_ps(tile + 40);
  __m256 c30 = _mm256_loadu_ps(tile + 48), c31 = _mm256_loadu_ps(tile + 56);
  const float* a0 = g.a + i * g.a_rs + k0 * g.a_cs;
  const int64_t rs = g.a_rs, cs = g.a_cs;
  for (int64_t kk = 0; kk < kc; kk++) {
    const __m256 b0 = _mm256_loadu_ps(panel + kk * 16);
    const __m256 b1 = _mm256_loadu_ps(panel + kk * 16 + 8);
    const float* ak = a0 + kk * cs;
    __m256 a = _mm256_broadcast_ss(ak);
    c00 = _mm256_fmadd_ps(a, b0, c00);
    c01 = _mm256_fmadd_ps(a, b1, c01);
    a = _mm256_broadcast_ss(ak + rs);
    c10 = _mm256_fmadd_ps(a, b0, c10);
    c11 = _mm256_fmadd_ps(a, b1, c11);
    a = _mm256_broadcast_ss(ak + 2 * rs);
    c20 = _mm256_fmadd_ps(a, b0, c20);
    c21 = _mm256_fmadd_ps(a, b1, c21);
    a = _mm256_broadcast_ss(ak + 3 * rs);
    c30 = _mm256_fmadd_ps(a, b0, c30);
    c31 = _mm256_fmadd_ps(a, b1, c31);
  }
  _mm256_storeu_ps(tile, c00);
  _mm256_storeu_ps(tile + 8, c01);
  _mm256_storeu_ps(tile + 16, c10);
  _mm256_storeu_ps(tile + 24, c11);
  _mm256_storeu_ps(tile + 32, c20);
  _mm256_storeu_ps(tile + 40, c21);
  _mm256_storeu_ps(tile + 48, c30);
  _mm256_storeu_ps(tile + 56, c31);
}
}  // namespace

#define RYZ_TRAIN_NS train_kernels_avx2
#include "train_impl.inc"

// Test-only (scripts/avx512-emulated.sh): the AVX-512 kernel files compiled for an AVX2 machine,
// their intrinsics emulated by SIMDe (Debian's libsimde-dev), so native_test can run the avx512
// kernel table against the scalar one on a CPU without AVX-512. SIMDe 0.7.4 lacks the intrinsics
// below; each is written here from its Intel definition (masked loads touch only the selected
// elements, as the instructions do; the reductions keep GCC's order of operations).
#pragma once
#include <immintrin.h>
#include <string.h>
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>

#define RYZ_EMU_BITS(dst, src) memcpy(&(dst), &(src), sizeof(dst))

static inline simde__m512i ryz_emu_cvtps_epi32(simde__m512 a) {
  float f[16];
  int32_t r[16];
  RYZ_EMU_BITS(f, a);
  for (int h = 0; h < 2; h++) _mm256_storeu_si256((__m256i*)(r + 8 * h), _mm256_cvtps_epi32(_mm256_loadu_ps(f + 8 * h)));
  simde__m512i out;
  RYZ_EMU_BITS(out, r);
  return out;
}
#define _mm512_cvtps_epi32(a) ryz_emu_cvtps_epi32(a)

static inline simde__m512i ryz_emu_cvttps_epi32(simde__m512 a) {
  float f[16];
  int32_t r[16];
  RYZ_EMU_BITS(f, a);
  for (int h = 0; h < 2; h++) _mm256_storeu_si256((__m256i*)(r + 8 * h), _mm256_cvttps_epi32(_mm256_loadu_ps(f + 8 * h)));
  simde__m512i out;
  RYZ_EMU_BITS(out, r);
  return out;
}
#define _mm512_cvttps_epi32(a) ryz_emu_cvttps_epi32(a)

static inline simde__m512 ryz_emu_cvtepi32_ps(simde__m512i a) {
  int32_t v[16];
  float r[16];
  RYZ_EMU_BITS(v, a);
  for (int h = 0; h < 2; h++) _mm256_storeu_ps(r + 8 * h, _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i*)(v + 8 * h))));
  simde__m512 out;
  RYZ_EMU_BITS(out, r);
  return out;
}
#define _mm512_cvtepi32_ps(a) ryz_emu_cvtepi32_ps(a)

static inline simde__m512i ryz_emu_cvtepi8_epi32(simde__m128i a) {
  int8_t v[16];
  int32_t r[16];
  RYZ_EMU_BITS(v, a);
  for (int i = 0; i < 16; i++) r[i] = v[i];
  simde__m512i out;
  RYZ_EMU_BITS(out, r);
  return out;
}
#define _mm512_cvtepi8_epi32(a) ryz_emu_cvtepi8_epi32(a)

// vpmovdb / vpmovdw: truncation, no saturation
static inline simde__m128i ryz_emu_cvtepi32_epi8(simde__m512i a) {
  int32_t v[16];
  int8_t r[16];
  RYZ_EMU_BITS(v, a);
  for (int i = 0; i < 16; i++) r[i] = (int8_t)(uint8_t)(uint32_t)v[i];
  simde__m128i out;
  RYZ_EMU_BITS(out, r);
  return out;
}
#define _mm512_cvtepi32_epi8(a) ryz_emu_cvtepi32_epi8(a)

static inline simde__m256i ryz_emu_cvtepi32_epi16(simde__m512i a) {
  int32_t v[16];
  int16_t r[16];
  RYZ_EMU_BITS(v, a);
  for (int i = 0; i < 16; i++) r[i] = (int16_t)(uint16_t)(uint32_t)v[i];
  simde__m256i out;
  RYZ_EMU_BITS(out, r);
  return out;
}
#define _mm512_cvtepi32_epi16(a) ryz_emu_cvtepi32_epi16(a)

static inline simde__m512 ryz_emu_cvtph_ps(simde__m256i a) {
  uint16_t h[16];
  float r[16];
  RYZ_EMU_BITS(h, a);
  for (int k = 0; k < 2; k++) _mm256_storeu_ps(r + 8 * k, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(h + 8 * k))));
  simde__m512 out;
  RYZ_EMU_BITS(out, r);
  return out;
}
#define _mm512_cvtph_ps(a) ryz_emu_cvtph_ps(a)

// The rounding immediate must stay a constant expression: a macro over two 256-bit conversions.
#define _mm512_cvtps_ph(a, imm)                                                            \
  __extension__({                                                                          \
    float ryz_f_[16];                                                                      \
    uint16_t ryz_h_[16];                                                                   \
    simde__m512 ryz_a_ = (a);                                                              \
    RYZ_EMU_BITS(ryz_f_, ryz_a_);                                                          \
    _mm_storeu_si128((__m128i*)ryz_h_, _mm256_cvtps_ph(_mm256_loadu_ps(ryz_f_), imm));     \
    _mm_storeu_si128((__m128i*)(ryz_h_ + 8), _mm256_cvtps_ph(_mm256_loadu_ps(ryz_f_ + 8), imm)); \
    simde__m256i ryz_o_;                                                                   \
    RYZ_EMU_BITS(ryz_o_, ryz_h_);                                                          \
    ryz_o_;                                                                                \
  })

static inline simde__m512 ryz_emu_maskz_loadu_ps(simde__mmask16 m, const void* p) {
  float r[16] = {0};
  for (int i = 0; i < 16; i++)
    if (m >> i & 1) memcpy(r + i, (const float*)p + i, 4);
  simde__m512 out;
  RYZ_EMU_BITS(out, r);
  return out;
}
#define _mm512_maskz_loadu_ps(m, p) ryz_emu_maskz_loadu_ps(m, p)

static inline void ryz_emu_mask_storeu_ps(void* p, simde__mmask16 m, simde__m512 a) {
  float v[16];
  RYZ_EMU_BITS(v, a);
  for (int i = 0; i < 16; i++)
    if (m >> i & 1) memcpy((float*)p + i, v + i, 4);
}
#define _mm512_mask_storeu_ps(p, m, a) ryz_emu_mask_storeu_ps(p, m, a)

static inline simde__m512i ryz_emu_maskz_loadu_epi16(simde__mmask32 m, const void* p) {
  int16_t r[32] = {0};
  for (int i = 0; i < 32; i++)
    if (m >> i & 1) memcpy(r + i, (const int16_t*)p + i, 2);
  simde__m512i out;
  RYZ_EMU_BITS(out, r);
  return out;
}
#define _mm512_maskz_loadu_epi16(m, p) ryz_emu_maskz_loadu_epi16(m, p)

static inline simde__m256i ryz_emu_maskz_loadu_epi16_256(simde__mmask16 m, const void* p) {
  int16_t r[16] = {0};
  for (int i = 0; i < 16; i++)
    if (m >> i & 1) memcpy(r + i, (const int16_t*)p + i, 2);
  simde__m256i out;
  RYZ_EMU_BITS(out, r);
  return out;
}
#define _mm256_maskz_loadu_epi16(m, p) ryz_emu_maskz_loadu_epi16_256(m, p)

// GCC's __MM512_REDUCE_OP: high 256 op low 256, then high 128 op low 128, then lanes {2,3} op
// {0,1}, then lane 0 op lane 1.
#define RYZ_EMU_REDUCE(name, op256, op128, opf)                                   \
  static inline float name(simde__m512 a) {                                       \
    float v[16];                                                                   \
    RYZ_EMU_BITS(v, a);                                                            \
    __m256 t3 = op256(_mm256_loadu_ps(v + 8), _mm256_loadu_ps(v));                 \
    __m128 t6 = op128(_mm256_extractf128_ps(t3, 1), _mm256_castps256_ps128(t3));   \
    __m128 t8 = op128(t6, _mm_shuffle_ps(t6, t6, _MM_SHUFFLE(1, 0, 3, 2)));        \
    float l[4];                                                                    \
    _mm_storeu_ps(l, t8);                                                          \
    return opf(l[0], l[1]);                                                        \
  }
static inline float ryz_emu_addf(float a, float b) { return a + b; }
static inline float ryz_emu_maxf(float a, float b) { return a > b ? a : b; }
RYZ_EMU_REDUCE(ryz_emu_reduce_add_ps, _mm256_add_ps, _mm_add_ps, ryz_emu_addf)
RYZ_EMU_REDUCE(ryz_emu_reduce_max_ps, _mm256_max_ps, _mm_max_ps, ryz_emu_maxf)
#define _mm512_reduce_add_ps(a) ryz_emu_reduce_add_ps(a)
#define _mm512_reduce_max_ps(a) ryz_emu_reduce_max_ps(a)

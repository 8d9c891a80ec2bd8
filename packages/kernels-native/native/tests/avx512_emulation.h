// Test-only (scripts/avx512-emulated.sh): the AVX-512 kernel files compiled for an AVX2 machine,
// their intrinsics emulated by SIMDe (Debian's libsimde-dev), so native_test can run the avx512
// kernel table against the scalar one on a CPU without AVX-512. SIMDe 0.7.4 lacks the intrinsics
// below; each is written here from its Intel definition (conversions through the AVX2 instruction
// on each half, masked loads and stores touching only the selected elements, as the instructions
// do, reductions in GCC's order of operations).
#pragma once
#include <immintrin.h>
#include <string.h>
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>

/** f(in lanes, out lanes) over the lanes of register `a`, as arrays: the result register. */
template <class Out, class OutT, int NOut, class In, class InT, int NIn, class F>
static inline Out ryz_emu_map(const In& a, F f) {
  static_assert(sizeof(In) == sizeof(InT) * NIn && sizeof(Out) == sizeof(OutT) * NOut, "lane counts");
  InT in[NIn];
  OutT out[NOut] = {};
  memcpy(in, &a, sizeof in);
  f(in, out);
  Out o;
  memcpy(&o, out, sizeof o);
  return o;
}

/** The N elements of `p` whose bit is set in `m`, the others zero; nothing else is read. */
template <class Out, class T, int N>
static inline Out ryz_emu_maskz_load(unsigned long long m, const void* p) {
  T r[N] = {};
  for (int i = 0; i < N; i++)
    if (m >> i & 1) memcpy(r + i, static_cast<const T*>(p) + i, sizeof(T));
  Out o;
  memcpy(&o, r, sizeof o);
  return o;
}

// Conversions: the AVX2 instruction on each 8-lane half (same rounding), or per lane.
#define _mm512_cvtps_epi32(a)                                                                 \
  (ryz_emu_map<simde__m512i, int32_t, 16, simde__m512, float, 16>((a), [](const float* f, int32_t* r) { \
    for (int h = 0; h < 16; h += 8) _mm256_storeu_si256((__m256i*)(r + h), _mm256_cvtps_epi32(_mm256_loadu_ps(f + h))); \
  }))
#define _mm512_cvttps_epi32(a)                                                                \
  (ryz_emu_map<simde__m512i, int32_t, 16, simde__m512, float, 16>((a), [](const float* f, int32_t* r) { \
    for (int h = 0; h < 16; h += 8) _mm256_storeu_si256((__m256i*)(r + h), _mm256_cvttps_epi32(_mm256_loadu_ps(f + h))); \
  }))
#define _mm512_cvtepi32_ps(a)                                                                 \
  (ryz_emu_map<simde__m512, float, 16, simde__m512i, int32_t, 16>((a), [](const int32_t* v, float* r) { \
    for (int h = 0; h < 16; h += 8) _mm256_storeu_ps(r + h, _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i*)(v + h)))); \
  }))
#define _mm512_cvtph_ps(a)                                                                    \
  (ryz_emu_map<simde__m512, float, 16, simde__m256i, uint16_t, 16>((a), [](const uint16_t* v, float* r) { \
    for (int h = 0; h < 16; h += 8) _mm256_storeu_ps(r + h, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(v + h)))); \
  }))
// The rounding immediate is substituted into the lambda, so it stays a constant expression.
#define _mm512_cvtps_ph(a, imm)                                                               \
  (ryz_emu_map<simde__m256i, uint16_t, 16, simde__m512, float, 16>((a), [](const float* f, uint16_t* r) { \
    for (int h = 0; h < 16; h += 8) _mm_storeu_si128((__m128i*)(r + h), _mm256_cvtps_ph(_mm256_loadu_ps(f + h), imm)); \
  }))
#define _mm512_cvtepi8_epi32(a)                                                               \
  (ryz_emu_map<simde__m512i, int32_t, 16, simde__m128i, int8_t, 16>((a), [](const int8_t* v, int32_t* r) { \
    for (int i = 0; i < 16; i++) r[i] = v[i];                                                 \
  }))
// vpmovdb / vpmovdw truncate (no saturation).
#define _mm512_cvtepi32_epi8(a)                                                               \
  (ryz_emu_map<simde__m128i, uint8_t, 16, simde__m512i, uint32_t, 16>((a), [](const uint32_t* v, uint8_t* r) { \
    for (int i = 0; i < 16; i++) r[i] = static_cast<uint8_t>(v[i]);                            \
  }))
#define _mm512_cvtepi32_epi16(a)                                                              \
  (ryz_emu_map<simde__m256i, uint16_t, 16, simde__m512i, uint32_t, 16>((a), [](const uint32_t* v, uint16_t* r) { \
    for (int i = 0; i < 16; i++) r[i] = static_cast<uint16_t>(v[i]);                           \
  }))

#define _mm512_maskz_loadu_ps(m, p) (ryz_emu_maskz_load<simde__m512, float, 16>((m), (p)))
#define _mm512_maskz_loadu_epi16(m, p) (ryz_emu_maskz_load<simde__m512i, int16_t, 32>((m), (p)))
#define _mm256_maskz_loadu_epi16(m, p) (ryz_emu_maskz_load<simde__m256i, int16_t, 16>((m), (p)))

static inline void ryz_emu_mask_storeu_ps(void* p, simde__mmask16 m, simde__m512 a) {
  float v[16];
  memcpy(v, &a, sizeof v);
  for (int i = 0; i < 16; i++)
    if (m >> i & 1) memcpy(static_cast<float*>(p) + i, v + i, 4);
}
#define _mm512_mask_storeu_ps(p, m, a) ryz_emu_mask_storeu_ps((p), (m), (a))

// GCC's __MM512_REDUCE_OP: high 256 op low 256, then high 128 op low 128, then lanes {2,3} op
// {0,1}, then lane 0 op lane 1 (max: _mm_max_ps's operand order throughout).
template <class Op256, class Op128>
static inline float ryz_emu_reduce(simde__m512 a, Op256 op256, Op128 op128) {
  float v[16];
  memcpy(v, &a, sizeof v);
  const __m256 t3 = op256(_mm256_loadu_ps(v + 8), _mm256_loadu_ps(v));
  const __m128 t6 = op128(_mm256_extractf128_ps(t3, 1), _mm256_castps256_ps128(t3));
  const __m128 t8 = op128(t6, _mm_shuffle_ps(t6, t6, _MM_SHUFFLE(1, 0, 3, 2)));
  return _mm_cvtss_f32(op128(t8, _mm_shuffle_ps(t8, t8, _MM_SHUFFLE(0, 1, 0, 1))));
}
#define _mm512_reduce_add_ps(a) \
  ryz_emu_reduce((a), [](__m256 x, __m256 y) { return _mm256_add_ps(x, y); }, [](__m128 x, __m128 y) { return _mm_add_ps(x, y); })
#define _mm512_reduce_max_ps(a) \
  ryz_emu_reduce((a), [](__m256 x, __m256 y) { return _mm256_max_ps(x, y); }, [](__m128 x, __m128 y) { return _mm_max_ps(x, y); })

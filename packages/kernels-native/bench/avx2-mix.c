// What the AVX2 integer dot costs on this core (never part of `npm test`): cycles per vpmaddubsw
// for the instruction mixes a Q4_0 x Q8 tile can be built from, and whole-block simulations of three
// tile designs, each 2048 multiply-adds. Registers and L1-resident memory only, so the figures are
// the core's issue limits, not the memory system's. Cycles assume the clock the first probe measures
// (a chain of dependent adds).
//
//   gcc -O2 bench/avx2-mix.c -o /tmp/avx2-mix && /tmp/avx2-mix
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}
static uint8_t buf[65536] __attribute__((aligned(64)));
static double ghz;

#define CLOBBER "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", \
                "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "memory"
// Best of 5 timings of `iters` runs of an asm body, in cycles per run.
#define TIME(iters, body)                                                                       \
  ({                                                                                            \
    double best_ = 1e9;                                                                         \
    for (int r_ = 0; r_ < 5; r_++) {                                                            \
      double t_ = now();                                                                        \
      for (long i_ = 0; i_ < (iters); i_++) __asm__ volatile(body ::"r"(buf) : CLOBBER);        \
      double d_ = now() - t_;                                                                   \
      if (d_ < best_) best_ = d_;                                                               \
    }                                                                                           \
    best_ * ghz * 1e9 / (iters);                                                                \
  })

static double clock_ghz(void) {
  long x = 0;
  double best = 1e9;
  for (int r = 0; r < 5; r++) {
    double t = now();
    for (long i = 0; i < 20000000; i++) __asm__ volatile(".rept 20\n add $1, %0\n .endr" : "+r"(x));
    double d = now() - t;
    if (d < best) best = d;
  }
  return 20.0 * 20000000 / best / 1e9;
}

// --- instruction mixes: 32 vpmaddubsw per run, 4 independent int16 sums (ymm8-11) ---
#define MIX(a, b, c, d) ".rept 8\n" a b c d ".endr\n"
#define MB(w, x, t, s) "vpmaddubsw %%ymm" #x ", %%ymm" #w ", %%ymm" #t "\n vpaddw %%ymm" #t ", %%ymm" #s ", %%ymm" #s "\n"
#define BC(off, x) "vpbroadcastd " #off "(%0), %%ymm" #x "\n"
#define SH(imm, x) "vpshufd $" #imm ", %%ymm4, %%ymm" #x "\n"

// --- tile simulations, one block of 2048 multiply-adds each ---
// Current design (ptile_q4x<8>): 8 rows x 8 tokens; per 4-value chunk of each token one
// vpbroadcastd from the Q8 act row feeds one vpmaddubsw; int16 sums in ymm2-9, float
// accumulators on the stack (they do not all fit in registers).
#define CUR_TK(t, c, s)                                                                              \
  "vpbroadcastd 4096+64*" #t "+4*" #c "(%0), %%ymm12\n vpmaddubsw %%ymm12, %%ymm0, %%ymm12\n"        \
  "vpaddw %%ymm12, %%ymm" #s ", %%ymm" #s "\n vpbroadcastd 4112+64*" #t "+4*" #c "(%0), %%ymm13\n"   \
  "vpmaddubsw %%ymm13, %%ymm1, %%ymm13\n vpaddw %%ymm13, %%ymm" #s ", %%ymm" #s "\n"
#define CUR_CH(c)                                                                                    \
  "vmovdqu 32*" #c "(%0), %%ymm12\n vpand 8256(%0), %%ymm12, %%ymm0\n vpsrlw $4, %%ymm12, %%ymm12\n" \
  "vpand 8256(%0), %%ymm12, %%ymm1\n" CUR_TK(0, c, 2) CUR_TK(1, c, 3) CUR_TK(2, c, 4) CUR_TK(3, c, 5) \
      CUR_TK(4, c, 6) CUR_TK(5, c, 7) CUR_TK(6, c, 8) CUR_TK(7, c, 9)
#define CUR_SEED(t, s) "vpbroadcastd 4096+64*" #t "+32(%0), %%ymm" #s "\n"
#define CUR_EP(t, s)                                                                                  \
  "vpmaddwd 8224(%0), %%ymm" #s ", %%ymm" #s "\n vcvtdq2ps %%ymm" #s ", %%ymm" #s "\n"               \
  "vbroadcastss 4096+64*" #t "+36(%0), %%ymm12\n vmulps %%ymm14, %%ymm12, %%ymm12\n"                 \
  "vfmadd213ps 12288+32*" #t "(%0), %%ymm12, %%ymm" #s "\n vmovaps %%ymm" #s ", 12288+32*" #t "(%0)\n"
#define CURRENT                                                                                            \
  CUR_SEED(0, 2) CUR_SEED(1, 3) CUR_SEED(2, 4) CUR_SEED(3, 5) CUR_SEED(4, 6) CUR_SEED(5, 7) CUR_SEED(6, 8) \
  CUR_SEED(7, 9) CUR_CH(0) CUR_CH(1) CUR_CH(2) CUR_CH(3) "vcvtph2ps 8192(%0), %%ymm14\n"                 \
  CUR_EP(0, 2) CUR_EP(1, 3) CUR_EP(2, 4) CUR_EP(3, 5) CUR_EP(4, 6) CUR_EP(5, 7) CUR_EP(6, 8) CUR_EP(7, 9)

// Pre-expanded activations: each token's 4-value chunks stored 8 times in memory (320 bytes per
// block with its correction and scale), so vpmaddubsw takes them as its memory operand; the 8
// unpacked weight chunks stay in ymm0-7; 8 rows x 4 tokens, twice.
#define EXP_MD(t, k) "vpmaddubsw 16384+320*" #t "+32*" #k "(%0), %%ymm" #k ", %%ymm9\n vpaddw %%ymm9, %%ymm8, %%ymm8\n"
#define EXP_TOK(t, a)                                                                                  \
  "vmovdqa 16384+320*" #t "+256(%0), %%ymm8\n" EXP_MD(t, 0) EXP_MD(t, 1) EXP_MD(t, 2) EXP_MD(t, 3)     \
      EXP_MD(t, 4) EXP_MD(t, 5) EXP_MD(t, 6) EXP_MD(t, 7)                                              \
  "vpmaddwd %%ymm15, %%ymm8, %%ymm8\n vcvtdq2ps %%ymm8, %%ymm8\n"                                       \
  "vmulps 16384+320*" #t "+288(%0), %%ymm14, %%ymm9\n vfmadd231ps %%ymm9, %%ymm8, %%ymm" #a "\n"
#define EXP_UNP(c, lo, hi)                                                                             \
  "vmovdqu 32*" #c "(%0), %%ymm9\n vpand 8256(%0), %%ymm9, %%ymm" #lo "\n vpsrlw $4, %%ymm9, %%ymm9\n" \
  "vpand 8256(%0), %%ymm9, %%ymm" #hi "\n"
#define EXP_HALF                                                                              \
  EXP_UNP(0, 0, 1) EXP_UNP(1, 2, 3) EXP_UNP(2, 4, 5) EXP_UNP(3, 6, 7) "vcvtph2ps 8192(%0), %%ymm14\n" \
  EXP_TOK(0, 10) EXP_TOK(1, 11) EXP_TOK(2, 12) EXP_TOK(3, 13)
#define EXPANDED "vmovdqa 8224(%0), %%ymm15\n" EXP_HALF EXP_HALF

// Shuffled activations: 16 rows (two groups) x 4 tokens; each token's block loaded as two
// vbroadcasti128 halves, one vpshufd per chunk feeds both groups' vpmaddubsw (unpacked weights of
// the 16 rows in an L1 scratch, as memory operands).
#define SHF_UNP(o)                                                                                      \
  "vmovdqu " #o "(%0), %%ymm0\n vpand 8256(%0), %%ymm0, %%ymm1\n vpsrlw $4, %%ymm0, %%ymm0\n"           \
  "vpand 8256(%0), %%ymm0, %%ymm0\n vmovdqa %%ymm1, 1024+2*" #o "(%0)\n vmovdqa %%ymm0, 1056+2*" #o "(%0)\n"
#define SHF_CH(k, imm)                                                                                  \
  "vpshufd $" #imm ", %%ymm14, %%ymm15\n vpmaddubsw 1024+64*" #k "(%0), %%ymm15, %%ymm13\n"             \
  "vpaddw %%ymm13, %%ymm10, %%ymm10\n vpmaddubsw 1280+64*" #k "(%0), %%ymm15, %%ymm13\n"                \
  "vpaddw %%ymm13, %%ymm11, %%ymm11\n vpshufd $" #imm ", %%ymm12, %%ymm15\n"                            \
  "vpmaddubsw 1056+64*" #k "(%0), %%ymm15, %%ymm13\n vpaddw %%ymm13, %%ymm10, %%ymm10\n"                \
  "vpmaddubsw 1312+64*" #k "(%0), %%ymm15, %%ymm13\n vpaddw %%ymm13, %%ymm11, %%ymm11\n"
#define SHF_TOK(t, a0, a1)                                                                                 \
  "vbroadcasti128 4096+64*" #t "(%0), %%ymm14\n vbroadcasti128 4112+64*" #t "(%0), %%ymm12\n"              \
  "vpbroadcastd 4128+64*" #t "(%0), %%ymm10\n vmovdqa %%ymm10, %%ymm11\n" SHF_CH(0, 0) SHF_CH(1, 0x55)     \
      SHF_CH(2, 0xaa) SHF_CH(3, 0xff) "vpmaddwd 8224(%0), %%ymm10, %%ymm10\n"                              \
  "vpmaddwd 8224(%0), %%ymm11, %%ymm11\n vcvtdq2ps %%ymm10, %%ymm10\n vcvtdq2ps %%ymm11, %%ymm11\n"        \
  "vbroadcastss 4132+64*" #t "(%0), %%ymm13\n vmulps %%ymm8, %%ymm13, %%ymm15\n"                           \
  "vfmadd231ps %%ymm15, %%ymm10, %%ymm" #a0 "\n vmulps %%ymm9, %%ymm13, %%ymm15\n"                         \
  "vfmadd231ps %%ymm15, %%ymm11, %%ymm" #a1 "\n"
#define SHUFFLED                                                                                            \
  SHF_UNP(0) SHF_UNP(32) SHF_UNP(64) SHF_UNP(96) SHF_UNP(128) SHF_UNP(160) SHF_UNP(192) SHF_UNP(224)        \
  "vcvtph2ps 8192(%0), %%ymm8\n vcvtph2ps 8208(%0), %%ymm9\n" SHF_TOK(0, 0, 1) SHF_TOK(1, 2, 3)             \
      SHF_TOK(2, 4, 5) SHF_TOK(3, 6, 7)

static int cmp(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

int main(void) {
  for (int i = 0; i < (int)sizeof buf; i++) buf[i] = (uint8_t)(i * 7);
  ghz = clock_ghz();
  printf("clock ~%.2f GHz (dependent adds)\n\ncycles per vpmaddubsw (32 per run, 4 int16 sums):\n", ghz);
  const long n = 20000000;
  printf("  vpmaddubsw alone                               %.2f\n",
         TIME(n, ".rept 8\n vpmaddubsw %%ymm4, %%ymm0, %%ymm8\n vpmaddubsw %%ymm5, %%ymm1, %%ymm9\n"
                 " vpmaddubsw %%ymm6, %%ymm2, %%ymm10\n vpmaddubsw %%ymm7, %%ymm3, %%ymm11\n .endr\n") / 32);
  printf("  + vpaddw                                       %.2f\n",
         TIME(n, MIX(MB(0, 4, 12, 8), MB(1, 5, 13, 9), MB(2, 6, 14, 10), MB(3, 7, 15, 11))) / 32);
  printf("  + vpbroadcastd m32 per vpmaddubsw (current)    %.2f\n",
         TIME(n, MIX(BC(0, 4) MB(0, 4, 12, 8), BC(4, 5) MB(1, 5, 13, 9), BC(8, 6) MB(2, 6, 14, 10),
                     BC(12, 7) MB(3, 7, 15, 11))) / 32);
  printf("  + vpbroadcastd m32 per 2 vpmaddubsw (16 rows)  %.2f\n",
         TIME(n, MIX(BC(0, 5) MB(0, 5, 12, 8), MB(1, 5, 13, 9), BC(8, 6) MB(2, 6, 14, 10),
                     MB(3, 6, 15, 11))) / 32);
  printf("  + vpshufd per vpmaddubsw                       %.2f\n",
         TIME(n, MIX(SH(0, 5) MB(0, 5, 12, 8), SH(0x55, 6) MB(1, 6, 13, 9), SH(0xaa, 7) MB(2, 7, 14, 10),
                     SH(0xff, 5) MB(3, 5, 15, 11))) / 32);
  printf("  + vpshufd per 2 vpmaddubsw                     %.2f\n",
         TIME(n, MIX(SH(0, 5) MB(0, 5, 12, 8), MB(1, 5, 13, 9), SH(0x55, 6) MB(2, 6, 14, 10),
                     MB(3, 6, 15, 11))) / 32);
  printf("  + 32-byte load per vpmaddubsw (memory operand) %.2f\n",
         TIME(n, MIX("vpmaddubsw 64(%0), %%ymm4, %%ymm12\n vpaddw %%ymm12, %%ymm8, %%ymm8\n",
                     "vpmaddubsw 96(%0), %%ymm5, %%ymm13\n vpaddw %%ymm13, %%ymm9, %%ymm9\n",
                     "vpmaddubsw 128(%0), %%ymm6, %%ymm14\n vpaddw %%ymm14, %%ymm10, %%ymm10\n",
                     "vpmaddubsw 160(%0), %%ymm7, %%ymm15\n vpaddw %%ymm15, %%ymm11, %%ymm11\n")) / 32);

  // The tile designs alternate, 7 rounds; medians.
  enum { kRounds = 7 };
  double cur[kRounds], exp[kRounds], shf[kRounds];
  const long m = 2000000;
  for (int r = 0; r < kRounds; r++) {
    cur[r] = TIME(m, CURRENT);
    exp[r] = TIME(m, EXPANDED);
    shf[r] = TIME(m, SHUFFLED);
  }
  qsort(cur, kRounds, sizeof(double), cmp);
  qsort(exp, kRounds, sizeof(double), cmp);
  qsort(shf, kRounds, sizeof(double), cmp);
  printf("\ncycles per 2048 multiply-adds, whole block (median of %d alternating rounds):\n", kRounds);
  printf("  current 8 rows x 8 tokens, vpbroadcastd        %.1f\n", cur[kRounds / 2]);
  printf("  8 rows x 4 tokens, pre-expanded activations    %.1f\n", exp[kRounds / 2]);
  printf("  16 rows x 4 tokens, vpshufd shared by 2 groups %.1f\n", shf[kRounds / 2]);
  return 0;
}
